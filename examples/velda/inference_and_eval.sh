#!/bin/bash
# velda-dags-and-workflows.md:108-117 and velda-ml-workflow-blog.md:126-131, verbatim.
DATA_FILE=$1

# Run inference
vrun -P gpu-1 --name inference ./run_inference.py $DATA_FILE

# Evaluate the inference result
vrun -P cpu-4 --after-success inference ./evaluate_inference.py $DATA_FILE
