"""The composition root: builds custody from its configuration and runs the daemon until it is told to stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from custody.api.server import start_server
from custody.app.custody import Custody
from custody.config import ServerConfig, load_server_config, read_hsm_pin
from custody.domain.errors import CustodyError
from custody.policy_file import load_policy

log = logging.getLogger("custody")


def build_custody(config: ServerConfig) -> Custody:
    """Open the HSM, the store and the policy; verify the keys; return the application."""
    # Imported here so that tools which only parse configuration never load the PKCS#11 library.
    from custody.hsm.pkcs11 import Pkcs11Hsm
    from custody.store.sqlite import SqliteStore

    policy = load_policy(config.policy_file)
    # PKCS#11 libraries read their own configuration (SOFTHSM2_CONF, vendor client settings) from the
    # environment when they are loaded, so it is set before the first load.
    os.environ.update(config.hsm.environment)
    hsm = Pkcs11Hsm(config.hsm.module, config.hsm.token_label, read_hsm_pin(config.hsm))
    try:
        store = SqliteStore.from_url(config.database_url, config.base_dir)
    except BaseException:
        hsm.close()
        raise
    custody = Custody(store=store, hsm=hsm, policy=policy)
    try:
        custody.keys.verify_keys_in_hsm()
    except BaseException:
        custody.close()
        raise
    return custody


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
