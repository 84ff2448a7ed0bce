#!/bin/bash
# velda-dags-and-workflows.md:14-24 and velda-ml-workflow-blog.md:51-58, verbatim.

# Process the data, e.g. data cleaning
vbatch -P cpu-16 --name process python process_data.py

# Train the model after processing is done
vbatch -P gpu-1 --name train --after-success process python train_model.py

# Model evaluation after training is complete
vbatch -P cpu-8 --name eval --after-success train python evaluate_model.py
