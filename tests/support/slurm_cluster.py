"""A real one-node SLURM cluster with accounting, for the tests: Debian's packages, no systemd.

`install()` puts Debian's SLURM, MUNGE, slurmdbd and MariaDB on the machine when they are missing
(root and apt-get needed). `Cluster(root).start()` brings up, all on loopback and with every file
under `root`: munged, mariadbd, slurmdbd, slurmctld and slurmd, with a `slurm.conf` sized to the
machine and the cluster, an account and the current user registered for accounting, so that
`sbatch`, `squeue` and `sacct` work as on a real site. `stop()` ends every daemon it started, by
PID, in reverse order. Clients find the cluster through `SLURM_CONF` (`Cluster.env`).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = [
    "slurmctld",
    "slurmd",
    "slurm-client",
    "slurmdbd",
    "munge",
    "mariadb-server",
    "mariadb-client",
]
COMMANDS = [
    *("slurmctld", "slurmd", "slurmdbd", "sbatch", "srun", "sacct", "sacctmgr", "sinfo", "squeue"),
    *("munged", "munge", "mariadbd", "mariadb-install-db", "mariadb"),
]
CLUSTER = "rctest"
ACCOUNT = "rctest"
PARTITION = "debug"
NODE = "node1"
# The plugin's job step runs each job through a nested `srun` with the SLURM_* variables removed
# (SLURM_CONF included), so that srun reads the system-wide path: it points to our file while the
# cluster is up, and only where the machine has no SLURM configuration of its own.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


class Unavailable(Exception):
    """The cluster cannot be had on this machine; the message says why."""


def _sbin_path() -> str:
    extra = [d for d in ("/usr/sbin", "/sbin") if d not in os.environ["PATH"].split(os.pathsep)]
    return os.pathsep.join([os.environ["PATH"], *extra])


def missing_commands() -> list[str]:
    path = _sbin_path()
    return [c for c in COMMANDS if shutil.which(c, path=path) is None]


def install(timeout: float = 600) -> None:
    """Install the Debian packages when a command is missing; Unavailable when that cannot be."""
    if not missing_commands():
        return
    if os.geteuid() != 0:
        raise Unavailable(f"SLURM is not installed ({missing_commands()}) and we are not root")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"SLURM is not installed ({missing_commands()}) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": _sbin_path()}
    # Package scripts must not start services (there is no init system to run them under, and a
    # started mariadb or munged would outlive the test): policy-rc.d refusing every action.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        apt = ["apt-get", "-y", "-qq", "-o", "Dpkg::Options::=--force-confdef"]
        command = [*apt, "install", "--no-install-recommends", *PACKAGES]
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:  # package lists missing or stale: update once, try again
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=timeout,
            )  # fmt: skip
            done = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout,
            )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise Unavailable(f"apt-get install of SLURM timed out after {timeout} s") from error
    finally:
        if own_policy:
            policy.unlink()
    if done.returncode != 0:
        raise Unavailable(f"apt-get install of SLURM failed: {done.stderr[-2000:]}")
    if missing_commands():
        raise Unavailable(f"still missing after apt-get install: {missing_commands()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_size() -> tuple[int, int]:
    """CPUs and memory (MB) the node offers: all CPUs, 90% of the memory."""
    meminfo = Path("/proc/meminfo").read_text().split()
    total_kb = int(meminfo[meminfo.index("MemTotal:") + 1])
    return os.cpu_count() or 1, int(total_kb / 1024 * 0.9)


class Cluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.user = getpass.getuser()
        self.cpus, self.memory_mb = machine_size()
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": _sbin_path()}
        self.started: list[tuple[str, Path]] = []  # (name, PID file), in start order
        self.linked = False

    # --- configuration -------------------------------------------------------------------
    def _write_configs(self) -> None:
        r = self.root
        for d in ("munge", "db", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # The default socket: not every SLURM client honours AuthInfo=socket= (sacctmgr does not).
        self.munge_socket = Path("/run/munge/munge.socket.2")
        key = r / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.db_socket = r / "db/mysql.sock"
        self.db_port, self.dbd_port = free_port(), free_port()
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        self.db_password = os.urandom(12).hex()
        # Daemons listen on loopback only (their configured addresses, not every interface).
        auth = "AuthType=auth/munge\nCommunicationParameters=NoInAddrAny\n"
        dbd = self.root / "slurmdbd.conf"
        dbd.write_text(
            auth + f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.dbd_port}\n"
            f"SlurmUser={self.user}\nPidFile={r}/slurmdbd.pid\nLogFile={r}/log/slurmdbd.log\n"
            "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={self.db_port}\nStorageUser=slurm\nStoragePass={self.db_password}\n"
            "StorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)  # slurmdbd refuses a readable file holding the database password
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(
            f"ClusterName={CLUSTER}\nSlurmctldHost={host}(127.0.0.1)\n"
            + auth
            + f"SlurmctldPort={self.ctld_port}\nSlurmdPort={self.slurmd_port}\n"
            f"SlurmUser={self.user}\nSlurmdUser=root\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/slurmctld.pid\nSlurmdPidFile={r}/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "JobAcctGatherType=jobacct_gather/none\nMpiDefault=none\nReturnToService=2\n"
            # The plugin puts rule and wildcards in the job's comment: keep it in accounting.
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStoreFlags=job_comment\n"
            f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={self.dbd_port}\n"
            # Finished jobs stay in slurmctld for 5 minutes; sacct has them for good.
            "MinJobAge=300\nSchedulerParameters=sched_interval=1\n"
            f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus}"
            f" RealMemory={self.memory_mb} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n"
        )

    # --- daemons ---------------------------------------------------------------------------
    def _run(self, *command: str, timeout: float = 60, check: bool = True, **kw):
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, **kw,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        return done

    def _daemon(self, name: str, pid_file: Path, *command: str) -> None:
        """Start a daemon that forks into the background and writes its PID file."""
        self.started.append((name, pid_file))
        self._run(*command)
        self._wait(lambda: _pid(pid_file) is not None, f"{name} PID file {pid_file}")

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def start(self) -> Cluster:
        self._write_configs()
        r = self.root
        if self.munge_socket.exists():
            if self._run("munge", "-n", check=False).returncode == 0:
                raise Unavailable(f"a MUNGE daemon of its own answers on {self.munge_socket}")
            self.munge_socket.unlink()  # left by a munged that was killed
        self.munge_socket.parent.mkdir(parents=True, exist_ok=True)
        self._link_system_conf()
        self._daemon(
            "munged", r / "munge/munged.pid", "munged", "--force",
            f"--socket={self.munge_socket}", f"--key-file={r}/munge/munge.key",
            f"--log-file={r}/log/munged.log", f"--pid-file={r}/munge/munged.pid",
            f"--seed-file={r}/munge/munged.seed",
        )  # fmt: skip
        self._start_mariadb()
        # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF.
        self._daemon("slurmdbd", r / "slurmdbd.pid", "slurmdbd")
        self._wait(self._dbd_answers, "slurmdbd to answer sacctmgr")
        self._register()
        self._daemon("slurmctld", r / "slurmctld.pid", "slurmctld")
        self._daemon("slurmd", r / "slurmd.pid", "slurmd", "-N", NODE)
        self._wait(self._node_idle, f"node {NODE} to be idle")
        return self

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left by an earlier test cluster that was killed
        if SYSTEM_CONF.exists():
            raise Unavailable(f"{SYSTEM_CONF} exists: this machine has a SLURM of its own")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked = True

    def _start_mariadb(self) -> None:
        db = self.root / "db"
        self._run(
            "mariadb-install-db", "--no-defaults", f"--datadir={db}/data", "--user=root",
            "--auth-root-authentication-method=socket", "--skip-test-db", timeout=120,
        )  # fmt: skip
        pid_file = db / "mariadbd.pid"
        self.started.append(("mariadbd", pid_file))
        # mariadbd directly (mysqld_safe logs to a syslog that is not running); it does not fork.
        log = (self.root / "log/mariadbd.log").open("w")
        subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={db}/data", "--user=root",
             f"--socket={self.db_socket}", "--bind-address=127.0.0.1", f"--port={self.db_port}",
             f"--pid-file={pid_file}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        self._wait(lambda: self.db_socket.exists() and _pid(pid_file), "mariadbd")
        sql = (
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        self._wait(
            lambda: (
                self._run(
                    "mariadb", f"--socket={self.db_socket}", "-u", "root", "-e", sql, check=False
                ).returncode
                == 0
            ),
            "mariadb to accept the slurm user",
        )

    def _dbd_answers(self) -> bool:
        return self._run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0

    def _register(self) -> None:
        """Cluster, account and user in the accounting database (re-adding one exits 1)."""

        def listed(kind: str, name: str) -> bool:
            out = self._run("sacctmgr", "-n", "-P", "list", kind, name, "format=name").stdout
            return name in out.split()

        if not listed("cluster", CLUSTER):
            self._run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        if not listed("account", ACCOUNT):
            self._run("sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}")
        if not listed("user", self.user):
            self._run("sacctmgr", "-i", "add", "user", self.user, f"account={ACCOUNT}")

    def _node_idle(self) -> bool:
        done = self._run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def stop(self) -> None:
        """SIGTERM to every daemon started, newest first, by PID; SIGKILL after 20 s."""
        for _name, pid_file in reversed(self.started):
            pid = _pid(pid_file)
            if pid is None:
                continue
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        self.started.clear()
        if self.linked and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()
        self.linked = False

    def pids(self) -> dict[str, int]:
        return {name: pid for name, f in self.started if (pid := _pid(f)) is not None}

    def logs(self) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
