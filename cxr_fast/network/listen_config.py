"""What ``cxr-fast listen`` can be asked to do: :class:`ListenConfig`, each option declared once.

Free of PyTorch and pynetdicom, so the command line builds its options from it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import (
    BACKENDS,
    SCORE_BATCH_SIZE,
    accept_ood_option,
    device_option,
    precision_option,
)
from cxr_fast.errors import UserInputError
from cxr_fast.network.retention import PRUNE_EVERY_S
from cxr_fast.options import check_options, option

DEFAULT_PORT = 11112  # the registered DICOM port for non-privileged use (PS3.8)
DEFAULT_AE_TITLE = "CXRFAST"
DEFAULT_MAX_WAIT = 0.2
DEFAULT_KEEP_DAYS = 30.0
_BATCH_DEFAULT = ", ".join(f"{n} on {kind}" for kind, n in SCORE_BATCH_SIZE.items())


def parse_ae_title(text: str) -> str:
    """An AE title as DICOM allows it (1-16 characters, no backslash or control character)."""
    title = text.strip()
    if not 1 <= len(title) <= 16 or "\\" in title or not title.isprintable():
        raise UserInputError(
            f"an AE title has 1 to 16 printable characters and no backslash, got {text!r}"
        )
    return title


def parse_peer(text: str) -> tuple[str, str, int]:
    """``PACS@127.0.0.1:4242`` -> ("PACS", "127.0.0.1", 4242), checked."""
    try:
        title, address = text.rsplit("@", 1)
        host, port = address.rsplit(":", 1)
        number = int(port)
    except ValueError:
        raise UserInputError(f"--send-to must look like AET@HOST:PORT, got {text!r}") from None
    if not host or not 0 < number < 65536:
        raise UserInputError(f"--send-to must look like AET@HOST:PORT, got {text!r}")
    return parse_ae_title(title), host, number


def parse_ae_titles(text: str) -> tuple[str, ...]:
    """``A,B`` (what repeated options arrive as) -> ("A", "B"), each checked."""
    return tuple(parse_ae_title(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class ListenConfig:
    """What ``cxr-fast listen`` was asked to do."""

    run: Path = option(
        argument=True,
        exists=True,
        help="A run folder or an exported file; scored as `score --model` scores it.",
    )
    spool: Path = option(
        required=True,
        file_okay=False,
        section="output",
        help="Folder where received films, their answers and the SRs waiting to be sent are "
        "kept (made if missing); what it holds unanswered is answered first on start.",
    )
    out: Path = option(
        required=True,
        section="output",
        help="Parquet file of the predictions (score's columns plus calling_ae and "
        "received_at), published when listen stops; rows are kept as they are made in a "
        "hidden folder beside it.",
    )
    keep_days: float = option(
        DEFAULT_KEEP_DAYS,
        min=0,
        section="output",
        help="Days a film is kept in SPOOL/answered after it was received, and a sent SR's "
        "marker in SPOOL/sent; older ones are deleted at start and every "
        f"{PRUNE_EVERY_S / 60:g} minutes (0: never; the spool then grows without end). The "
        "cost: an older row's `path` names a deleted file, and a study pushed again after "
        "its markers went gets its SR sent again (same UID: the PACS stores it once). "
        "incoming/, outbox/ and refused/ are never pruned.",
    )
    port: int = option(DEFAULT_PORT, min=0, max=65535, help="TCP port of the Storage SCP.")
    host: str = option("127.0.0.1", help="Address to listen on.")
    ae_title: str = option(DEFAULT_AE_TITLE, parse=parse_ae_title, help="This SCP's AE title.")
    allow_aet: tuple[str, ...] = option(
        factory=tuple,
        parse=parse_ae_titles,
        multiple=True,
        default_text="any calling AE title",
        help="Calling AE titles that may connect (repeat for several); others are refused "
        "and logged.",
    )
    send_to: tuple[str, str, int] | None = option(
        None,
        parse=parse_peer,
        metavar="AET@HOST:PORT",
        section="output",
        default_text="none: the SRs stay in SPOOL/outbox",
        help="Send each SR by C-STORE to this PACS; while it is down they wait in the spool "
        "and are retried.",
    )
    cam: bool = option(
        False,
        section="output",
        help="Also answer each scored film with its Grad-CAM overlay, a Secondary Capture in "
        "its study (needs the run folder: the eager model draws the map).",
    )
    backend: str = option("auto", choices=BACKENDS, section="model", help="As score's --backend.")
    device: str = device_option()
    precision: str = precision_option()
    accept_ood: bool = accept_ood_option()
    # None: SCORE_BATCH_SIZE for the device, as score
    batch_size: int | None = option(
        None, min=1, default_text=_BATCH_DEFAULT, help="Films per model batch, at most."
    )
    max_wait: float = option(
        DEFAULT_MAX_WAIT,
        min=0,
        help="Seconds a received film may wait for others to fill its batch.",
    )

    def __post_init__(self) -> None:
        check_options(self)
