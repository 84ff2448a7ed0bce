#!/bin/bash
# velda-dags-and-workflows.md:88-97 and velda-ml-workflow-blog.md:100-107: the same pipeline
# but for its last step. The DAG doc's `vbatch -P cpu-8 --name validate --after-success
# compute python validate_job.py` waits on a step named `compute` that the pipeline never
# submits (vbatch refuses it: no task named "compute" to wait for), so the blog's last step,
# after `train`, stands in for it. The rest is verbatim.

# Process all data files in parallel
vbatch -P cpu-16 --name preprocess ./process_all.sh

# Train the model after all files are processed
vbatch -P gpu-1 --name train --after-success preprocess python train_model.py

# Evaluate the model
vbatch -P cpu-8 --name eval --after-success train python evaluate_model.py
