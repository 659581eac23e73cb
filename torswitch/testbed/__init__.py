"""The real HDFS testbed: Apache Hadoop daemons in network namespaces behind an emulated ToR.

Modules, one concern each:

* `topology`: the namespace/veth/bridge plan and the tc-shaped uplink;
* `netns`: running commands and opening sockets inside namespaces;
* `config`: rendering hadoop-conf/ templates into per-process conf dirs;
* `hadoop`: Java and the Maven-fetched jars, JVM command lines, start/stop, RSS;
* `jmx`: the /jmx servlet of NameNode and DataNodes;
* `state`: the run directory and its state file;
* `lifecycle`: `up`, `down`, `status`;
* `handle`: `Testbed`, the handle tests and tools use on a running instance;
* `dataset`: `testbed load`, generated raw and Parquet files written from a compute host.

The command line is torswitch.commands.testbed; the pytest fixture is integration/conftest.py.
"""
