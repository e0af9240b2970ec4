"""One training figure of torchvision's googlenet, for `benchmarks/peers.py`.

    python benchmarks/torch_googlenet.py '{"image_size": 64, "batch_size": 128, "seconds": 20}'

Runs in any Python with `torch` and `torchvision` (a separate virtual environment will do:
nothing of this project is imported). The model is torchvision's `googlenet` with its two
aux heads, fresh weights, 10 classes, channels_last, float32, eager; SGD with momentum
0.9 and the paper's loss, main + 0.3 x each aux head, on one random batch held in memory,
as `peers.py` times the Keras models. torchvision's 5x5 branches are 3x3 convolutions (a
known slip of its port; this project keeps the paper's 5x5), so its step does less work.
Prints `peers-figure: {"images_per_second": ..., ...}`: the batch over the median step.
"""

import json
import statistics
import sys
import time

RESULT = "peers-figure: "  # as peers.py reads it
WARM_UP_STEPS = 3


def figure(request):
    import torch
    import torchvision

    torch.manual_seed(0)
    size, batch = request["image_size"], request["batch_size"]
    model = torchvision.models.googlenet(weights=None, aux_logits=True, num_classes=10, init_weights=True)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.rand(batch, 3, size, size).mul_(2).sub_(1).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        main, aux2, aux1 = model(images)  # torchvision returns (logits, aux2, aux1)
        loss = loss_fn(main, labels) + 0.3 * (loss_fn(aux1, labels) + loss_fn(aux2, labels))
        loss.backward()
        optimizer.step()

    for _ in range(WARM_UP_STEPS):
        step()
    times, start = [], time.perf_counter()
    while not times or time.perf_counter() - start < request["seconds"]:
        begun = time.perf_counter()
        step()
        times.append(time.perf_counter() - begun)
    return {
        "images_per_second": batch / statistics.median(times),
        "precision": "float32",
        "onednn": torch.backends.mkldnn.is_available(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(RESULT + json.dumps(figure(json.loads(sys.argv[1]))), flush=True)
