"""What ships: the SavedModel (`export`), LiteRT files (`litert`), batched prediction with
Grad-CAM (`predict`, `gradcam`)."""
