#!/bin/bash
# velda-dags-and-workflows.md:79-83 and velda-ml-workflow-blog.md:93-94, verbatim.

ls *.csv | xargs -I {} vrun -P cpu-8 python process_file.py {}
