#!/bin/bash
# velda-dags-and-workflows.md:171-177 (`# workflow.sh` there names the file), verbatim.
vbatch --name step1 python step1.py
vbatch --name step2 --after-success step1 python step2.py
vbatch --name step3 --after-success step2 python step3.py
