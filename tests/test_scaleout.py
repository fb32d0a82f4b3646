"""Scale-out for real: multiruns through Ray, submitit and Optuna, read back from their outputs.

Each engine is an extra (``pip install -e ".[ray]"``, ``".[slurm]"``, ``".[optuna]"``) and each test is marked
``slow`` plus the engine's marker, so ``pytest -m ray`` (etc.) runs one engine in the environment that has it.
Without the extra a test skips, unless PPO_REQUIRE_EXTRAS=1 (CI sets it), where a missing engine fails.

Ray and SLURM clusters here run on 127.0.0.1 inside a network namespace of their own (``unshare --net``: only
loopback exists there, since Ray 2.60 and SLURM bind some servers to all interfaces whatever the node IP), with
their own temp dir and an environment tag; the tests check where the cluster's processes listened, and that none
is left afterwards.
"""

from __future__ import annotations

import csv
import importlib.util
import ipaddress
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
import yaml

TAG_VAR = "PPO_SCALEOUT_TEST_TAG"
TINY = ["env=bandit", "env.kwargs.noise_std=1.0", "total_timesteps=512", "eval.episodes=5"]
# Two PPO iterations of CartPole: the deterministic evaluation already differs between hyperparameters.
TINY_CARTPOLE = ["env=cartpole", "total_timesteps=1024", "eval.episodes=4"]
CLIP_RANGE = (0.05, 0.4)
ENTROPY_RANGE = (1e-4, 0.1)


# ---------------------------------------------------------------------------------------------------- helpers


def need(module: str, extra: str) -> None:
    """Skip when the engine's plugin is not installed (fail instead under PPO_REQUIRE_EXTRAS=1)."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed: pip install -e '.[{extra}]'"
        if os.environ.get("PPO_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def clean_env(tag: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "HYDRA_FULL_ERROR"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    if tag:
        env[TAG_VAR] = tag
    return env


def train(args: list[str], cwd: Path, env: Optional[dict] = None, timeout: float = 400, prefix: Sequence[str] = (),
          wrap: Callable[[list[str]], list[str]] = list) -> subprocess.CompletedProcess:
    """``python -m experiments.train -m ARGS`` (run as ``prefix + wrap(cmd)``); fails the test unless it exits 0."""
    cmd = [*prefix, *wrap([sys.executable, "-m", "experiments.train", "-m", *args])]
    proc = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def job_dirs(root: Path) -> list[Path]:
    return sorted(p.parent.parent for p in root.glob("*/.hydra/config.yaml"))


def scalars(tb_dir: Path, tag: str) -> list[float]:
    """The values of one scalar tag in a run's event files, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def check_job(job: Path, seed: int, env_id: str = "SoftmaxBandit-v0", total_timesteps: int = 512) -> float:
    """A finished job: its config, TensorBoard events with a final evaluation, and its last checkpoint.
    Returns the final evaluation's mean return as logged."""
    from agents.checkpoint import load_checkpoint

    cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    assert cfg["seed"] == seed and cfg["env"]["id"] == env_id
    assert list((job / "tb").glob("events.out.tfevents.*")), f"no TensorBoard events in {job}"
    assert scalars(job / "tb", "charts/episodic_return"), f"{job}: no training returns logged"
    evals = scalars(job / "tb", "eval/mean_return")
    assert evals and math.isfinite(evals[-1]), f"{job}: no final evaluation logged"
    state = load_checkpoint(job / "checkpoint.pt")
    assert state["global_step"] == total_timesteps
    assert state["run"]["config"]["seed"] == seed
    return evals[-1]


def seed_of(job: Path) -> int:
    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["seed"]


# -------------------------------------------------------------------------------- processes and their sockets


def tagged_pids(tag: str) -> list[int]:
    """Processes whose environment carries the tag (Ray's workers inherit it from the raylet)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _decode(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    return str(ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))


def network_view(pid: int) -> tuple[int, set[str], set[tuple[str, int]]]:
    """A process's network namespace (inode), the interfaces in it, and the TCP sockets it listens on."""
    ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    interfaces = {line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]}
    inodes = _socket_inodes(pid)
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addr, port = fields[1].split(":")
                listening.add((_decode(addr), int(port, 16)))
    return ns, interfaces, listening


class NetworkWatch:
    """Samples, in the background while a command runs, where the tagged processes live on the network."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.host_ns = os.stat("/proc/self/ns/net").st_ino
        self.namespaces: set[int] = set()
        self.interfaces: set[str] = set()
        self.listening: set[tuple[str, int]] = set()
        self.host_listening: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for pid in tagged_pids(self.tag):
            try:
                ns, interfaces, listening = network_view(pid)
            except OSError:  # exited meanwhile
                continue
            self.namespaces.add(ns)
            if ns == self.host_ns:  # e.g. `unshare` itself, sampled before it has entered the new namespace
                self.host_listening |= listening
                continue
            self.interfaces |= interfaces
            self.listening |= listening

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def __enter__(self) -> "NetworkWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def assert_private(self) -> None:
        """The cluster listened only inside a network namespace of its own whose only interface is loopback, and
        no process of it listened in the host's network (a tagged process may be seen there for an instant: the
        `unshare` wrapper before it switches namespace)."""
        assert self.listening, "saw no listening socket of the cluster"
        assert not self.host_listening, f"the cluster listened in the host's network: {self.host_listening}"
        assert self.interfaces == {"lo"}, f"the cluster's network namespace has more than loopback: {self.interfaces}"


def in_private_network(cmd: list[str]) -> list[str]:
    """``cmd`` in a new network namespace with only the loopback interface, brought up.

    Ray 2.60 binds several of its servers to all interfaces even with ``--node-ip-address=127.0.0.1``, so a
    cluster is only private when nothing but loopback exists where it runs."""
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]


def need_private_network() -> None:
    try:
        ok = subprocess.run(in_private_network(["true"]), capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        message = "the Ray tests need `unshare --net` and `ip` (root or CAP_SYS_ADMIN) to keep the cluster private"
        if os.environ.get("PPO_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def assert_no_leftovers(tag: str, grace: float = 30.0) -> None:
    """Wait for every tagged process to exit; kill (by pid) and fail if any outlives the grace period."""
    deadline = time.monotonic() + grace
    while (pids := tagged_pids(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if pids:
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in pids if Path(f"/proc/{p}").exists()}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"processes left running after the Ray cluster was shut down: {names}")


def short_temp_dir() -> Path:
    """Ray's session dir holds Unix sockets, whose paths must stay under 108 bytes: pytest's tmp_path is too deep."""
    return Path(tempfile.mkdtemp(prefix="ppo-ray-", dir="/tmp"))


def worker_logs(temp_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in temp_dir.glob("session_*/logs/worker-*.out"))


# ---------------------------------------------------------------------------------------------------- no engine


@pytest.mark.parametrize("override, module, extra", [
    ("search=clip_entropy_optuna", "hydra_plugins.hydra_optuna_sweeper", "optuna"),
    ("hydra/launcher=ray_local", "hydra_plugins.hydra_ray_launcher", "ray"),
    ("hydra/launcher=ray_cluster", "hydra_plugins.hydra_ray_launcher", "ray"),
    ("hydra/launcher=submitit_local", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher=slurm_example", "hydra_plugins.hydra_submitit_launcher", "slurm"),
])
def test_a_missing_engine_names_its_extra(override, module, extra, tmp_path):
    """Without the plugin, choosing its config is refused in one line that says which extra to install."""
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed in this environment")
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "-m", override, "env=bandit"], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f'pip install -e ".[{extra}]"' in lines[0]
    assert not list(tmp_path.rglob("*.pt"))


# ---------------------------------------------------------------------------------------------------- Ray


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray head on 127.0.0.1 (``ray start --head --block``) in a network namespace of its own; stopped by
    SIGTERM at the end, after which none of its processes may be left."""
    need("hydra_plugins.hydra_ray_launcher", "ray")
    need_private_network()
    import shutil

    temp_dir = short_temp_dir()
    tag = temp_dir.name
    address = "127.0.0.1:6379"  # nothing else can hold it in the new namespace
    log_path = tmp_path / "ray_head.log"
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           "--port=6379", "--include-dashboard=false", "--num-cpus=2", f"--temp-dir={temp_dir}",
           "--disable-usage-stats"]
    with open(log_path, "w") as log:
        head = subprocess.Popen(in_private_network(cmd), env=clean_env(tag), stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, f"ray start exited with {head.returncode}:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"Ray did not start in 120 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        # the driver joins the head's namespace (sh exec'd ray, so head.pid is the ray process)
        enter = ["nsenter", f"--net=/proc/{head.pid}/ns/net", "--"]
        yield {"address": address, "temp_dir": temp_dir, "tag": tag, "enter": enter}
    finally:
        head.terminate()  # --block: SIGTERM drains the node and stops every process it started
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        try:
            assert_no_leftovers(tag)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_ray_multirun_on_an_existing_cluster(ray_cluster, tmp_path):
    """``hydra/launcher=ray_cluster`` with the cluster's address: both jobs run in the cluster's workers."""
    root = tmp_path / "multirun"
    with NetworkWatch(ray_cluster["tag"]) as watch:
        proc = train(["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster['address']}",
                      *TINY, "seed=0,1", f"hydra.sweep.dir={root}"], cwd=tmp_path, env=clean_env(ray_cluster["tag"]),
                     prefix=ray_cluster["enter"])
        watch.sample()
    out = proc.stdout + proc.stderr
    assert f"Connecting to existing Ray cluster at address: {ray_cluster['address']}" in out
    jobs = job_dirs(root)
    assert [seed_of(j) for j in jobs] == [0, 1]
    for job in jobs:
        check_job(job, seed_of(job))
    logs = worker_logs(ray_cluster["temp_dir"])
    for job in jobs:  # the jobs ran in the cluster's worker processes, not in the driver
        assert f"run dir: {job}" in logs
    watch.assert_private()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_ray_multirun_on_a_local_cluster(tmp_path):
    """``hydra/launcher=ray_local`` starts its own cluster and takes it down when the sweep ends."""
    need("hydra_plugins.hydra_ray_launcher", "ray")
    need_private_network()
    import shutil

    temp_dir = short_temp_dir()
    tag = temp_dir.name
    root = tmp_path / "multirun"
    try:
        with NetworkWatch(tag) as watch:
            proc = train(["hydra/launcher=ray_local", f"+hydra.launcher.ray.init._temp_dir={temp_dir}",
                          *TINY, "seed=0,1", f"hydra.sweep.dir={root}"], cwd=tmp_path, env=clean_env(tag),
                         wrap=in_private_network)
        assert_no_leftovers(tag)
        assert "Started a local Ray instance" in proc.stdout + proc.stderr
        jobs = job_dirs(root)
        assert [seed_of(j) for j in jobs] == [0, 1]
        for job in jobs:
            check_job(job, seed_of(job))
        logs = worker_logs(temp_dir)
        for job in jobs:
            assert f"run dir: {job}" in logs
        watch.assert_private()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- submitit


def read_report_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_submitit_local_multirun_and_seed_report(tmp_path):
    """``hydra/launcher=submitit_local``: 4 seeds as 4 submitit jobs; each job's pickled return is its logged final
    evaluation, and the sweep report aggregates the seeds as mean ± std and IQM."""
    need("hydra_plugins.hydra_submitit_launcher", "slurm")
    root = tmp_path / "multirun"
    train(["hydra/launcher=submitit_local", *TINY, "seed=range(0,4)", f"hydra.sweep.dir={root}"], cwd=tmp_path)
    jobs = job_dirs(root)
    assert sorted(seed_of(j) for j in jobs) == [0, 1, 2, 3]
    finals = {seed_of(j): check_job(j, seed_of(j)) for j in jobs}

    # submitit's own record of each job: the value the task function returned
    results = sorted((root / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 4
    returned = {}
    for path in results:
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success"
        returned[job_return.cfg.seed] = job_return.return_value
    assert returned.keys() == finals.keys()
    for seed, value in returned.items():
        assert value == pytest.approx(finals[seed], rel=1e-6)  # float32 in TensorBoard, float64 returned
    assert len({round(v, 4) for v in finals.values()}) > 1, "the seeds should not all evaluate alike"

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep_report", str(root), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = read_report_csv(out / "report.csv")  # one config, four seeds
    x = np.sort(np.array(list(finals.values())))
    assert int(row["n_seeds"]) == 4
    assert float(row["mean"]) == pytest.approx(x.mean(), rel=1e-6)
    assert float(row["std"]) == pytest.approx(x.std(), rel=1e-6, abs=1e-9)
    assert float(row["iqm"]) == pytest.approx(x[1:3].mean(), rel=1e-6, abs=1e-9)  # n=4: drop one at each end
    assert f"{x.mean():.2f} ± {x.std():.2f}" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_slurm_example_config_composes(tmp_path):
    """No SLURM here: ``hydra/launcher=slurm_example`` composes into submitit's SlurmLauncher with its settings."""
    need("hydra_plugins.hydra_submitit_launcher", "slurm")
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "hydra/launcher=slurm_example",
                           "hydra.launcher.partition=debug", "--cfg", "hydra", "--package", "hydra.launcher"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    launcher = yaml.safe_load(proc.stdout)  # the package's keys, under a "# @package hydra.launcher" line
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["partition"] == "debug"
    assert launcher["timeout_min"] > 0 and launcher["cpus_per_task"] >= 1 and launcher["mem_gb"] > 0


SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "sacct")
SLURM_CONF = """\
ClusterName=ppotest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def need_slurm() -> None:
    need("hydra_plugins.hydra_submitit_launcher", "slurm")
    import shutil

    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        message = ("a private SLURM cluster needs root and Debian's slurmctld slurmd slurm-client munge"
                   + (f" (missing: {', '.join(missing)})" if missing else " (not root)"))
        if os.environ.get("PPO_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    need_private_network()


@pytest.fixture
def slurm_cluster():
    """A one-node SLURM cluster (munged, slurmctld, slurmd, all in the foreground) in a network namespace of its
    own; the daemons are stopped at the end and none of their processes may be left.

    The namespace's loopback also carries 127.0.0.2: SLURM resolves addresses with AI_ADDRCONFIG, which finds no
    IPv4 address where 127.0.0.1 is the only one."""
    need_slurm()
    import shutil

    root = Path(tempfile.mkdtemp(prefix="ppo-slurm-", dir="/tmp"))
    tag = root.name
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root))
    env = clean_env(tag)
    env["SLURM_CONF"] = str(conf)
    holder = subprocess.Popen(["unshare", "--net", "--", "sh", "-c",
                               "ip link set lo up && ip addr add 127.0.0.2/32 dev lo && exec sleep 3600"], env=env)
    daemons: list[subprocess.Popen] = []
    try:
        enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
        deadline = time.monotonic() + 30
        while "127.0.0.2" not in subprocess.run([*enter, "ip", "-o", "addr", "show", "lo"], capture_output=True,
                                                text=True).stdout:
            assert holder.poll() is None and time.monotonic() < deadline, "the network namespace did not come up"
            time.sleep(0.2)
        out = open(root / "log" / "daemons.out", "w")
        munge = root / "munge"
        daemons.append(subprocess.Popen(
            [*enter, "munged", "-F", "-f", f"--socket={munge}/munge.socket", f"--key-file={key}",
             f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/seed", f"--log-file={root}/log/munged.log"],
            env=env, stdout=out, stderr=subprocess.STDOUT))
        while not (munge / "munge.socket").exists():
            assert daemons[0].poll() is None and time.monotonic() < deadline, (root / "log/munged.log").read_text()
            time.sleep(0.2)
        daemons.append(subprocess.Popen([*enter, "slurmctld", "-D", "-i"], env=env, stdout=out,
                                        stderr=subprocess.STDOUT))
        daemons.append(subprocess.Popen([*enter, "slurmd", "-D", "-N", "localhost"], env=env, stdout=out,
                                        stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while True:
            state = subprocess.run([*enter, "sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            assert all(d.poll() is None for d in daemons), (root / "log" / "daemons.out").read_text()[-3000:]
            assert time.monotonic() < deadline, f"SLURM not idle after 90 s: {state.stdout} {state.stderr}"
            time.sleep(0.5)
        yield {"enter": enter, "env": env, "root": root, "tag": tag}
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        holder.kill()
        holder.wait()
        try:
            assert_no_leftovers(tag)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_slurm_example_on_a_private_slurm_cluster(slurm_cluster, tmp_path):
    """``hydra/launcher=slurm_example`` as shipped (only the partition overridden): submitit submits a job array
    with the example's sbatch settings, SLURM runs both jobs, and they write their TensorBoard files and
    checkpoints."""
    root = tmp_path / "multirun"
    with NetworkWatch(slurm_cluster["tag"]) as watch:
        train(["hydra/launcher=slurm_example", "hydra.launcher.partition=debug", *TINY, "seed=0,1",
               f"hydra.sweep.dir={root}"], cwd=tmp_path, env=slurm_cluster["env"], prefix=slurm_cluster["enter"])
        watch.sample()
    jobs = job_dirs(root)
    assert [seed_of(j) for j in jobs] == [0, 1]
    for job in jobs:
        check_job(job, seed_of(job))
    (script,) = root.glob(".submitit/*/*_submission.sh")
    sbatch = script.read_text()
    for line in ("--array=0-1", "--partition=debug", "--time=60", "--mem=4GB", "--cpus-per-task=2", "--nodes=1"):
        assert f"#SBATCH {line}" in sbatch, sbatch
    array_id = script.name.split("_")[0]
    for job in jobs:  # each job ran as a task of that SLURM array, under submitit
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        task = f"{array_id}_{hydra_cfg['job']['num']}"
        assert hydra_cfg["job"]["id"] == task
        log = (root / ".submitit" / task / f"{task}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={task}" in log and f"run dir: {job}" in log
    # submitit returns once each job's result file is written; the job processes may still be exiting, so wait
    # (bounded) until SLURM has recorded both completions before reading their exit status.
    ctld = slurm_cluster["root"] / "log" / "slurmctld.log"
    deadline = time.monotonic() + 120
    while ctld.read_text().count("_job_complete") < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    ctld_log = ctld.read_text()
    assert ctld_log.count("WEXITSTATUS 0") == 2, ctld_log[-3000:]
    watch.assert_private()


# ---------------------------------------------------------------------------------------------------- Optuna


@pytest.mark.slow
@pytest.mark.optuna
@pytest.mark.timeout(600)
def test_optuna_search_in_one_word(tmp_path):
    """``search=clip_entropy_optuna``: trials sample within the ranges, and Optuna's best is the best returned
    final evaluation; the sweep report reads the trials like any multirun."""
    need("hydra_plugins.hydra_optuna_sweeper", "optuna")
    root = tmp_path / "multirun"
    n_trials = 4
    train(["search=clip_entropy_optuna", f"hydra.sweeper.n_trials={n_trials}", *TINY_CARTPOLE,
           f"hydra.sweep.dir={root}"], cwd=tmp_path)
    assert not (root / "multirun.yaml").exists()
    results = yaml.safe_load((root / "optimization_results.yaml").read_text())
    best = results["best_params"]
    assert set(best) == {"agent.clip_ratio", "agent.entropy_coef"}
    assert CLIP_RANGE[0] <= best["agent.clip_ratio"] <= CLIP_RANGE[1]
    assert ENTROPY_RANGE[0] <= best["agent.entropy_coef"] <= ENTROPY_RANGE[1]

    jobs = job_dirs(root)
    assert len(jobs) == n_trials
    trials = []
    for job in jobs:
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        clip, ent = cfg["agent"]["clip_ratio"], cfg["agent"]["entropy_coef"]
        assert CLIP_RANGE[0] <= clip <= CLIP_RANGE[1] and ENTROPY_RANGE[0] <= ent <= ENTROPY_RANGE[1]
        assert "search" not in job.name and "seed" not in job.name  # subdir = the sampled values + overrides
        trials.append((clip, ent, check_job(job, seed=1, env_id="CartPole-v1", total_timesteps=1024)))
        params = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["sweeper"]["params"]
        assert params == {"agent.clip_ratio": "interval(0.05, 0.4)",
                          "agent.entropy_coef": "tag(log, interval(1e-4, 0.1))"}
    assert len({(c, e) for c, e, _ in trials}) == n_trials, "every trial should sample new values"
    values = [v for _, _, v in trials]
    assert len({round(v, 4) for v in values}) > 1, "trials should differ, or 'best' tests nothing"
    assert results["best_value"] == pytest.approx(max(values), rel=1e-6)  # direction: maximize
    (best_trial,) = [t for t in trials if (t[0], t[1]) == (best["agent.clip_ratio"], best["agent.entropy_coef"])]
    assert best_trial[2] == pytest.approx(results["best_value"], rel=1e-6)

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep_report", str(root), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_report_csv(out / "report.csv")
    assert len(rows) == n_trials and all(int(r["n_seeds"]) == 1 for r in rows)
    top = max(rows, key=lambda r: float(r["mean"]))
    assert float(top["agent.clip_ratio"]) == best["agent.clip_ratio"]
    assert float(top["mean"]) == pytest.approx(results["best_value"], rel=1e-6)
