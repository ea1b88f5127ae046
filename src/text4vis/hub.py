"""The Hugging Face Hub: `hf-hub:ORG/NAME[@REVISION]` checkpoints through huggingface_hub's cache.

huggingface_hub is imported on first use (the `[hub]` extra); `HF_HUB_OFFLINE=1` reads the cache only.
"""
from __future__ import annotations

from .errors import WeightsError, first_line


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """hf-hub:ORG/NAME[@REVISION] -> (ORG/NAME, REVISION or None)."""
    body = spec[len("hf-hub:"):] if spec.startswith("hf-hub:") else spec
    repo, _, rev = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (_ and not rev):
        raise WeightsError(f"checkpoint={spec}: a hub checkpoint is hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo, rev or None


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError("the Hugging Face Hub needs huggingface_hub: pip install 'text4vis[hub]'") from None
    return huggingface_hub


def hub_download(spec: str, filename: str) -> str:
    """`filename` of hub repository `spec` (hf-hub:ORG/NAME[@REVISION]) in huggingface_hub's cache,
    downloaded when missing and the hub answers; offline (HF_HUB_OFFLINE=1 or no network) the cache only."""
    repo, rev = parse_hub_spec(spec)
    hub = _hub()
    from huggingface_hub import errors
    from .towers import hub_access
    try:
        with hub_access():
            return hub.hf_hub_download(repo, filename, revision=rev, library_name="text4vis")
    except errors.LocalEntryNotFoundError:
        where = f"{repo}" + (f" --revision {rev}" if rev else "")
        raise WeightsError(f"checkpoint={spec}: {filename} of {repo}{'@' + rev if rev else ''} is not in the Hugging "
                           f"Face cache ({hub.constants.HF_HUB_CACHE}) and the hub is offline (HF_HUB_OFFLINE or no "
                           f"network); download it once where there is network (hf download {where}) or pass the "
                           f"local folder") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError) as exc:
        raise WeightsError(f"checkpoint={spec}: {type(exc).__name__.replace('Error', '')}: the hub has no "
                           f"{filename} in {repo}{'@' + rev if rev else ''}") from None
    except Exception as exc:
        raise WeightsError(f"checkpoint={spec}: could not get {filename} from the hub "
                           f"({first_line(exc, 160, with_type=True)})") from None
