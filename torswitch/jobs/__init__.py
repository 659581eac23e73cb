"""Iterative jobs that re-read their input from HDFS at every iteration: the workload of
`torswitch bench iterative`.

Both engines run the same k-means (Lloyd's algorithm) over the points tables that
`torswitch testbed load --parquet-files` writes (columns ``x0``..``x3``), from the same initial
centres, so their results can be compared across runs and configurations:

* ``pyarrow`` (`torswitch.jobs.arrow`): Parquet column chunks read through hdfs-native (a
  native DataTransferProtocol client, no JVM), assignment and update in numpy. Light enough
  for a 2-core machine.
* ``spark`` (`torswitch.jobs.spark`): pyspark in local mode, ``spark.read.parquet(hdfs://...)``
  at every iteration, assignment as column expressions, ``groupBy(cluster)`` for the update.
  Nothing is cached on the Spark side, so every iteration really reads HDFS.

The math both share is in `torswitch.jobs.kmeans`. A job runs as a worker process inside a
compute host's namespace (`torswitch.jobs.worker`): it starts once (a SparkSession takes
seconds) and then runs one iteration per command on its stdin, answering with one JSON line,
so that the benchmark can read its counters between iterations and the time it reports per
iteration is the iteration's alone.

`torswitch.jobs.spark_hint` is the scheduler side: hint a Spark job's input, then run it.
"""

ENGINES: tuple[str, ...] = ("pyarrow", "spark")
