"""The composition root: builds custody from its configuration and runs the daemon until it is told to stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from custody.api.server import start_server
from custody.app.custody import Custody, utc_now
from custody.config import ServerConfig, load_server_config, read_hsm_pin
from custody.domain.errors import ConfigurationError, CustodyError

# Tests of expiry and time-locks move the daemon's clock forward by writing a number of seconds into the file
# this variable names. It exists for tests only; the daemon warns loudly when it is set.
CLOCK_OFFSET_VARIABLE = "CUSTODY_UNSAFE_CLOCK_OFFSET_FILE"

log = logging.getLogger("custody")


def build_custody(config: ServerConfig) -> Custody:
    """Open the HSM, the store and the policy; verify the keys; return the application."""
    # Imported here so that tools which only parse configuration never load the PKCS#11 library.
    from custody.hsm.pkcs11 import Pkcs11Hsm
    from custody.store.sqlite import SqliteStore

    try:
        policy_document = config.policy_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the policy file {config.policy_file}: {exc}") from None
    # PKCS#11 libraries read their own configuration (SOFTHSM2_CONF, vendor client settings) from the
    # environment when they are loaded, so it is set before the first load.
    os.environ.update(config.hsm.environment)
    hsm = Pkcs11Hsm(config.hsm.module, config.hsm.token_label, read_hsm_pin(config.hsm))
    try:
        store = SqliteStore.from_url(config.database_url, config.base_dir)
    except BaseException:
        hsm.close()
        raise
    custody = Custody(
        store=store, hsm=hsm, clock=daemon_clock(), checkpoint_every=config.limits.audit_checkpoint_every
    )
    try:
        custody.audit.open()
        custody.policy.seed(policy_document, str(config.policy_file))
        custody.keys.verify_keys_in_hsm()
    except BaseException:
        custody.close()
        raise
    return custody


def daemon_clock() -> Callable[[], datetime]:
    offset_file = os.environ.get(CLOCK_OFFSET_VARIABLE)
    if not offset_file:
        return utc_now
    log.warning(
        "%s is set: the daemon's clock is shifted by the seconds in %s (tests only)",
        CLOCK_OFFSET_VARIABLE,
        offset_file,
    )
    path = Path(offset_file)

    def shifted_now() -> datetime:
        try:
            offset = float(path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return utc_now() + timedelta(seconds=offset)

    return shifted_now


def configure_logging() -> None:
    level = os.environ.get("CUSTODY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def serve(config_path: Path, listen: str | None) -> int:
    """Run the daemon in the foreground. Returns the process exit code: 0 after a clean SIGTERM or SIGINT."""
    configure_logging()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("received %s; finishing in-flight calls", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        config = load_server_config(config_path)
        address = listen or config.listen
        custody = build_custody(config)
    except CustodyError as exc:
        print(f"custody: cannot start: {exc.message}", file=sys.stderr)
        return 2
    try:
        running = start_server(custody, config, address)
        custody.start_background_work(config.limits.worker_interval_seconds)
    except CustodyError as exc:
        custody.close()
        print(f"custody: cannot start: {exc.message}", file=sys.stderr)
        return 2
    host = address.rpartition(":")[0]
    # Tests and scripts read this line to learn the port when they asked for port 0.
    log.info("custody listening on %s:%d (mTLS required)", host, running.port)
    print(f"custody listening on {host}:{running.port}", file=sys.stderr, flush=True)
    # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
    while not stop.wait(1.0):
        pass
    running.stop(config.limits.shutdown_grace_seconds)
    custody.close()
    log.info("custody stopped")
    return 0
