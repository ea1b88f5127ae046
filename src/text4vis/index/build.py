"""Building an index: the plan (what still needs embedding), the build lock, torchrun ranks, the merge
of the shards into the searchable folder, and `build_index` itself (its options: `BuildSettings`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from .. import remote
from ..errors import ClassifierError, UsageError, VideoIndexError
from .embedding import (
    check_same_model,
    embed_video_groups,
    embed_window_groups,
    load_model,
    local_checkpoint,
    model_record,
    shard_rows,
)
from .inputs import expand_inputs, file_stat
from .ray_engine import RaySettings, embed_video_groups_ray, require_ray
from .storage import (
    COLUMNS,
    DTYPES,
    ENTRIES,
    FAISS_FILE,
    FORMAT,
    INDEX_JSON,
    LOCK,
    SHARDS,
    VECTORS,
    VERSION,
    InFlight,
    NpyWriter,
    compact_shards,
    RowReader,
    entry_schema,
    finished_shards,
    live_entries,
    read_info,
    read_shard_table,
    require_arrow,
    shard_dir,
    shard_name,
    take_inflight,
    write_json,
    write_shard,
)
from .vectors import EXACT_BELOW, VECTOR_INDEXES, build_vector_index, require_faiss

DEFAULT_SHARD_SIZE = 1000
ENGINES = ("local", "ray")



@dataclass
class Plan:
    groups: list[list[tuple[str, int, float]]]   # pending shards: (path, size, mtime) per video
    names: list[str]
    seq: int
    skipped: int



def make_plan(out: str, videos: list[str], shard_size: int) -> Plan:
    """Which videos still need embedding (not in a finished shard with the same size and mtime), grouped
    into shards of `shard_size` in input order."""
    done: dict[str, tuple[int, tuple]] = {}
    seq = 0
    for name in finished_shards(out):
        table, s = read_shard_table(out, name)
        seq = max(seq, s)
        for p, size, mtime in zip(*(table.column(c).to_pylist() for c in ("path", "size", "mtime"))):
            if p not in done or s > done[p][0]:
                done[p] = (s, (size, mtime))
    pending = []
    for p in videos:
        size, mtime = file_stat(p)
        if p in done and done[p][1] == (size, mtime):
            continue
        pending.append((p, size, mtime))
    groups = [pending[i:i + shard_size] for i in range(0, len(pending), shard_size)]
    return Plan(groups, [shard_name(g) for g in groups], seq + 1, len(videos) - len(pending))



# ----------------------------------------------------------------------------- merging shards

def merge(out: str, info: dict) -> dict:
    """Rank 0, at the end of a build: the live entries of all shards -> merged-<token>/ (entries.parquet,
    vectors.npy, vectors.faiss); index.json then points at it (atomically) and older merged folders go."""
    pa, pq = require_arrow()
    faiss = require_faiss()
    rows, names = live_entries(out)
    dim, dtype, vi = info["model"]["embedding_width"], info["dtype"], info["vector_index"]
    token = hashlib.sha1(json.dumps([names, dtype, vi], sort_keys=True).encode()).hexdigest()[:16]
    folder = f"merged-{token}"
    tmp = os.path.join(out, f"{folder}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ok = [r for r in rows if r["status"] == "ok"]
    writer = NpyWriter(os.path.join(tmp, VECTORS), len(ok), dim, dtype)
    for start in range(0, len(ok), 65536):
        chunk = ok[start:start + 65536]
        cache: dict[int, np.ndarray] = {}
        for r in chunk:
            if r["_shard"] not in cache:
                rd = RowReader(os.path.join(shard_dir(out), names[r["_shard"]] + ".npy"))
                cache[r["_shard"]] = rd.read(0, len(rd))
                rd.close()
        writer.write(np.stack([cache[r["_shard"]][r["_local"]] for r in chunk]))
    writer.close()
    row = 0
    for r in rows:
        r["row"] = row if r["status"] == "ok" else -1
        row += r["status"] == "ok"
    table = pa.table({c: [r[c] for r in rows] for c in (*COLUMNS, "row")}, schema=entry_schema(pa, True))
    pq.write_table(table, os.path.join(tmp, ENTRIES))
    reader = RowReader(os.path.join(tmp, VECTORS))
    index, settings = build_vector_index(reader, vi["type"], vi["exact_below"], vi.get("nlist"), vi.get("nprobe"))
    reader.close()
    faiss.write_index(index, os.path.join(tmp, FAISS_FILE))
    del index
    final = os.path.join(out, folder)
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    compact_shards(out)          # the merged folder stands alone: shards of replaced entries can go now
    names = finished_shards(out)
    videos = {r["path"] for r in rows}
    failed = [r for r in rows if r["status"] != "ok"]
    current = {"folder": folder, "entries": len(rows), "embedded": len(ok), "videos": len(videos),
               "failed": len(failed), "vector_index": settings, "shards": len(names)}
    info = dict(info, current=current)
    write_json(os.path.join(out, INDEX_JSON), info)
    for f in os.listdir(out):
        if f.startswith("merged-") and f != folder:
            shutil.rmtree(os.path.join(out, f), ignore_errors=True)
    return current


# ----------------------------------------------------------------------------- building

class BuildLock:
    """An exclusive fcntl.flock on DIR/.lock: a second process building into DIR is refused, and the
    lock goes with the process that holds it (a killed build leaves no stale lock)."""

    def __init__(self, out: str):
        import fcntl
        self.path = os.path.join(out, LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise VideoIndexError(f"{out}: another process (pid {holder}) is building into this index now; "
                                  f"wait for it to finish, or build into another folder") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor drops the flock
            self.fd = None



def _prepare_dir(out: str) -> dict | None:
    """The existing index at `out` (None for a new or empty folder); refuses other folders."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise VideoIndexError(f"out={out}: exists and is not a folder")
    if not os.path.isdir(out):
        os.makedirs(out, exist_ok=True)
        return None
    if os.path.isfile(os.path.join(out, INDEX_JSON)):
        try:
            return read_info(out)
        except VideoIndexError as exc:   # its shards cannot be trusted without the model record
            raise VideoIndexError(f"{exc}; nothing is built into it: build into a new folder, or delete "
                                  f"{out} to build it again from scratch") from None
    if set(os.listdir(out)) - {LOCK, SHARDS}:
        raise VideoIndexError(f"out={out}: a folder that holds other files and no text4vis index; "
                              f"build into a new or empty folder")
    return None


def _check_settings(old: dict, new: dict, out: str) -> None:
    check_same_model(old["model"], new["model"], out)
    for key, what in (("entries", "entries (window=, stride=)"), ("dtype", "dtype=")):
        if old.get(key) != new.get(key):
            raise VideoIndexError(f"{out}: was built with {what} {old.get(key)}, not {new.get(key)}; "
                                  f"build into another folder for other settings")


def _dist_setup() -> tuple[int, int, object]:
    """Under torchrun: a gloo group for the few messages of a build (the model itself needs none)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    import datetime

    import torch.distributed as dist
    if not dist.is_initialized():
        # ranks wait for each other only at the end; a rank with slower shards must not time the others out
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        group = dist.group.WORLD
        own = True
    else:
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7))
        own = False
    return dist.get_rank(), dist.get_world_size(), (group, own)


def _broadcast(obj, group):
    if group is None:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group[0])
    return box[0]


@dataclass
class BuildSettings:
    """The options of a build (`build_index(inputs, out, **options)` / `VideoIndex.build`)."""
    checkpoint: str | None = None      # the model: a text4vis checkpoint, a converted folder, hf-hub:ORG/NAME
    clip: str | None = None            # CLIP towers (default: the checkpoint's own)
    frames: int | None = None          # frames per clip (default: the checkpoint's)
    prompts: list[str] | None = None   # prompt templates recorded for text queries
    device: str = "auto"
    precision: str = "auto"
    window: float | None = None        # seconds: one entry per time window instead of one per video
    stride: float | None = None        # seconds between window starts (default: the index's, else 2 as timeline)
    shard_size: int = DEFAULT_SHARD_SIZE   # videos per shard
    batch_size: int = 8
    workers: int | None = None         # decoding processes (default: engine.default_workers)
    dtype: str = "float32"             # stored embeddings: float32 or float16
    vector_index: str = "auto"         # auto, flat, ivf-sq8, ivf-pq
    exact_below: int = EXACT_BELOW     # auto: exact search below this many entries
    nlist: int | None = None           # IVF cells (default: about sqrt(N))
    nprobe: int | None = None          # IVF cells searched per query
    progress: bool = False             # a progress bar on rank 0
    runtime: str = "torch"             # torch, or onnx (embed on ONNX Runtime; the index records the model)
    engine: str = "local"              # local (this process, its DataLoader workers; torchrun ranks), or ray
    ray: RaySettings | None = None     # with engine="ray": address, num_cpus, concurrency, num_gpus, retries

    def check(self) -> None:
        """UsageError for the first option out of range, by the shared checks (`text4vis.errors`, the same
        as `timeline`'s): whole numbers within bounds (numpy integers accepted; bools, strings and fractions
        not), window and stride finite seconds within `sampling.check_window_times`'s bounds. Makes them plain
        ints and floats; stride stays None when not given (`resolve_stride` fills it in)."""
        from ..errors import check_bool, check_int
        from ..sampling import check_window_times
        for name, least, optional in (("frames", 1, True), ("shard_size", 1, False), ("batch_size", 1, False),
                                      ("workers", 0, True), ("exact_below", 0, False), ("nlist", 1, True),
                                      ("nprobe", 1, True)):
            setattr(self, name, check_int(name, getattr(self, name), least, optional=optional))
        self.progress = check_bool("progress", self.progress)
        if self.engine not in ENGINES:
            raise UsageError(f"engine={self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.engine == "ray":
            self.ray = self.ray or RaySettings()
            self.ray.check()
            if self.window is not None:
                raise UsageError("engine='ray' builds one entry per video; window= entries need engine='local'")
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UsageError("engine='ray' runs from one driver process, not under torchrun")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype={self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.vector_index not in VECTOR_INDEXES:
            raise UsageError(f"vector_index={self.vector_index!r}: choose one of {', '.join(VECTOR_INDEXES)}")
        if self.prompts is not None:
            from ..classifiers import check_prompts
            if isinstance(self.prompts, (str, bytes)):
                raise UsageError(f"prompts={self.prompts!r}: give a list of templates, e.g. [{self.prompts!r}]")
            try:
                self.prompts = check_prompts(self.prompts)
            except ClassifierError as exc:
                raise UsageError(f"prompts={self.prompts!r}: {exc}") from None
        if self.window is None:
            if self.stride is not None:
                raise UsageError("stride= needs window= (the window length in seconds)")
            return
        self.window, stride = check_window_times(self.window, 1.0 if self.stride is None else self.stride)
        self.stride = None if self.stride is None else stride

    def resolve_stride(self, old: dict | None) -> None:
        """A window build without stride=: the stride of the index being added to, else `timeline`'s default
        (DEFAULT_STRIDE, 2 s), so `index build --window 4` holds the windows `timeline` scores by default."""
        if self.window is not None and self.stride is None:
            from ..timeline import DEFAULT_STRIDE  # (here: the timeline module loads torch)
            recorded = (old or {}).get("entries", {}).get("stride")
            self.stride = float(recorded) if recorded is not None and (old or {})["entries"].get("window") == \
                self.window else DEFAULT_STRIDE


def build_index(inputs, out: str, settings: BuildSettings | None = None, **options) -> dict:
    """Embed `inputs` (video files, folders, list files) into the index folder `out`; see VideoIndex.build.
    The options are BuildSettings' fields, given as one `settings` or as keywords."""
    s = dataclasses.replace(settings, **options) if settings is not None else BuildSettings(**options)
    s.check()
    if s.engine == "ray":
        require_ray()                     # before the model loads: one line saying how to install it
    spec = s.checkpoint                   # as given: Ray's workers resolve an hf-hub: name themselves
    s.checkpoint = local_checkpoint(s.checkpoint)
    if remote.is_remote(os.fspath(out)):
        raise UsageError(f"out={out}: an index is built into a local or shared (POSIX) folder; videos may be read "
                         f"from object storage, the index is not written there (copy the folder up afterwards)")
    out = os.path.abspath(out)
    rank, world, group = _dist_setup()
    lock = None
    try:
        setup = None
        if rank == 0:
            try:
                lock, setup = _setup_build(inputs, out, s)
            except Exception as exc:
                _broadcast(("error", type(exc).__name__, str(exc)), group)
                raise
            rec = setup.pop("rec")
            _broadcast(("ok", setup), group)
        else:
            msg = _broadcast(None, group)
            if msg[0] == "error":
                raise VideoIndexError(f"rank 0 stopped the build: {msg[2]}")
            setup = msg[1]
            s.stride = setup["info"]["entries"]["stride"]     # as rank 0 resolved it
            rec = load_model(s.checkpoint, s.clip, s.frames, s.device, s.precision, runtime=s.runtime)
        plan: Plan = setup["plan"]
        mine = [g for g in range(len(plan.groups)) if g % world == rank]
        groups = [plan.groups[g] for g in mine]
        dim = setup["info"]["model"]["embedding_width"]

        def on_group(k: int, items) -> None:
            rows, emb = shard_rows(groups[k], items, dim)
            write_shard(out, plan.names[mine[k]], rows, emb, plan.seq, s.dtype)

        bar = None
        if s.progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=sum(len(g) for g in groups), desc="index", unit="video", leave=False)
        died = {(p, size, mtime): n for p, size, mtime, n in setup["died"]}
        if s.engine == "ray":
            model_args = {"checkpoint": spec if str(spec).startswith("hf-hub:") else s.checkpoint, "clip": s.clip,
                          "frames": s.frames, "device": s.device, "precision": s.precision, "runtime": s.runtime}
            embed_video_groups_ray(rec, groups, s.batch_size, model_args, s.ray, on_group, bar)
        elif s.window is None:
            embed_video_groups(rec, groups, s.batch_size, s.workers, on_group, bar, inflight=InFlight(out, rank),
                               died=died)
        else:
            embed_window_groups(rec, groups, s.window, s.stride, s.batch_size, on_group, bar,
                                 inflight=InFlight(out, rank), died=died)
        if bar is not None:
            bar.close()
        if group is not None:
            import torch.distributed as dist
            dist.barrier(group=group[0])          # every rank's shards are written
        report = None
        if rank == 0:
            current = merge(out, setup["info"])
            report = _report(out, setup, plan, current)
        return _broadcast(report, group)
    finally:
        if lock is not None:
            lock.release()
        if group is not None and group[1]:
            import torch.distributed as dist
            dist.destroy_process_group()


def _setup_build(inputs, out: str, s: BuildSettings):
    require_arrow()
    require_faiss()
    old = _prepare_dir(out)
    lock = BuildLock(out)
    try:
        os.makedirs(shard_dir(out), exist_ok=True)
        for f in os.listdir(shard_dir(out)):           # what a killed build was writing
            if ".tmp" in f:
                os.remove(os.path.join(shard_dir(out), f))
        for f in os.listdir(out):
            if f.startswith("merged-") and ".tmp" in f:
                shutil.rmtree(os.path.join(out, f), ignore_errors=True)
        videos, empty = expand_inputs(inputs)
        if not videos:
            raise UsageError(f"no videos found in {' '.join(map(str, [inputs] if isinstance(inputs, str) else inputs))}")
        rec = load_model(s.checkpoint, s.clip, s.frames, s.device, s.precision, runtime=s.runtime)
        s.resolve_stride(old)
        prompts = s.prompts
        if old is not None:       # the recorded prompts are kept: never rewritten by a later build
            recorded = old["model"].get("prompts")
            if prompts is not None and recorded is not None and list(prompts) != list(recorded):
                raise VideoIndexError(f"{out}: was built with prompts= {recorded}, not {list(prompts)}; the "
                                      f"recorded prompts are not rewritten (build without prompts= to add to it, "
                                      f"or into another folder; search and tag take other prompts per call)")
            prompts = recorded if prompts is None else prompts
        info = {"format": FORMAT, "version": VERSION,
                "model": model_record(rec, s.checkpoint, s.clip, prompts, known=old["model"] if old else None),
                "entries": {"window": s.window, "stride": s.stride}, "dtype": s.dtype,
                "vector_index": {"type": s.vector_index, "exact_below": s.exact_below, "nlist": s.nlist,
                                 "nprobe": s.nprobe}}
        if old is not None:
            _check_settings(old, info, out)
            info["current"] = old.get("current")
        write_json(os.path.join(out, INDEX_JSON), info)
        plan = make_plan(out, videos, s.shard_size)
        died = take_inflight(out)       # videos earlier builds died on while embedding them in-process
    except BaseException:
        lock.release()
        raise
    return lock, {"info": info, "plan": plan, "videos": videos, "empty": empty, "rec": rec,
                  "died": [[*k, n] for k, n in died.items()]}


def _report(out: str, setup: dict, plan: Plan, current: dict) -> dict:
    """What a build did, and which of its inputs are recorded as failed (now or by an earlier build)."""
    _, pq = require_arrow()
    table = pq.read_table(os.path.join(out, current["folder"], ENTRIES), columns=["path", "status", "error"])
    wanted = set(setup["videos"])
    failed = [{"video": p, "error": e} for p, s, e in zip(*(table.column(c).to_pylist() for c in ("path", "status", "error")))
              if s != "ok" and p in wanted]
    return {"out": out, "videos": len(setup["videos"]), "embedded_now": sum(len(g) for g in plan.groups),
            "already_indexed": plan.skipped, "failed": failed, "empty_folders": setup["empty"],
            "index": current}

