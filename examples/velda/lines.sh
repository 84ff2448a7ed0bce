# The seeds' one-line vrun and vbatch commands, verbatim, each under the seed doc
# (Velda's docs, kept in the project's shared seeds) and the line it comes from.
# ../velda-seeds.sh reads this file and runs it a line at a time in a scratch workspace,
# waiting for the tasks each line submits before the next. The files these lines start are
# the other scripts here (verbatim too) and stand-ins for the docs' Python scripts.

# velda-overview.md:17
vrun -P gpu-a100-8 python train.py
# velda-overview.md:26
vbatch -f -P gpu-a100-8 python train.py  # -f streams logs immediately
# velda-overview.md:31
vbatch -N 10 python worker.py

# velda-ml-workflow-blog.md:23
vrun -P cpu-8 python my_script.py
# velda-ml-workflow-blog.md:29, then :35 with vgrid for velda (after the wait: log prints what is there)
JOB_ID=$(vbatch -P cpu-8 python my_long_running_script.py)
vgrid task wait "$JOB_ID" && vgrid task log ${JOB_ID}
# velda-ml-workflow-blog.md:41
vbatch -f -P cpu-8 python my_long_running_script.py

# velda-dags-and-workflows.md:29 (training_pipeline.sh: :14-24; the blog's :51-58 too)
vbatch ./training_pipeline.sh

# velda-dags-and-workflows.md:45, after the two tasks it waits on (these two are not in the doc)
vbatch --name task1 python task1.py
vbatch --name task2 python task2.py
vbatch --name aggregate --after-success task1 --after-success task2 python aggregate.py

# velda-dags-and-workflows.md:56 and velda-ml-workflow-blog.md:73
vbatch bash -c "ls *.csv | xargs -I {} vbatch --name {} -P cpu-8 python process_file.py {}"
# velda-dags-and-workflows.md:67 and velda-ml-workflow-blog.md:81
vbatch bash -c "ls *.csv | xargs -L 100 vbatch -P cpu-8 python process_file.py"

# The docs' main pipeline (main_pipeline.sh), started as they start training_pipeline.sh
vbatch ./main_pipeline.sh

# velda-dags-and-workflows.md:122 and velda-ml-workflow-blog.md:137 (inference_and_eval.sh: :108-117)
vbatch bash -c "ls *.csv | xargs -I {} vbatch --name {} ./inference_and_eval.sh {}"

# velda-dags-and-workflows.md:139, :142
vbatch --name preprocess-dataset python process.py
vbatch python process.py

# velda-dags-and-workflows.md:150-152
vbatch --name data-prep -P cpu-16 python prepare.py      # CPU-intensive
vbatch --name training -P gpu-a100 python train.py       # GPU training
vbatch --name evaluation -P cpu-4 python evaluate.py     # Light evaluation

# velda-dags-and-workflows.md:161, :164
ls *.csv | xargs -L 100 vbatch -P cpu-8 python process.py
ls *.csv | xargs -I {} vbatch -P cpu-8 python process.py {}  # if each takes <1 min

# velda-dags-and-workflows.md:182 (workflow.sh: :171-177)
vbatch ./workflow.sh
