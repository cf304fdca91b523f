"""Running trained models on images: the tiled pipeline, the execution engines (eager torch, OpenVINO),
precision and device choice, and what each model needs to be tiled (context, memory)."""
