"""The composition root: builds custody from its configuration and runs the daemon until it is told to stop.

The object graph: the real HSM adapter (one in-process ``Pkcs11Hsm``, or ``LaneHsm`` worker processes when
``[hsm] lanes`` is above 1) behind ``InstrumentedHsm``; the store ``open_store`` picks by URL behind
``InstrumentedStore``; the application (``Custody``) over both; the gRPC server, its health monitor, the
Prometheus listener and the systemd notifier around it.

With ``[hsm] wait_for_token = true`` a daemon whose token is absent does not refuse to start: it serves at
once, answers every custody call UNAVAILABLE and reports NOT_SERVING, looks for the token every
``wait_seconds`` (initializing the PKCS#11 library anew each time, which is how SoftHSM2 and most libraries
notice a token that appeared), and builds the rest once the token is there.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from types import FrameType

from custody.api.server import RunningServer, start_server
from custody.app.anchor import TokenState, retire_token_state
from custody.app.custody import Custody, Health, utc_now
from custody.config import (
    HsmConfig,
    ServerConfig,
    load_server_config,
    read_hsm_pin,
    with_listener_overrides,
)
from custody.domain.errors import ConfigurationError, CustodyError, HsmUnavailable, Unavailable
from custody.exit_codes import EXIT_START_REFUSED, EXIT_START_TEMPORARY_FAILURE
from custody.hsm.base import Hsm
from custody.hsm.instrumented import InstrumentedHsm
from custody.jsonrpc.server import RunningJsonRpc, start_jsonrpc_server
from custody.observability.logs import configure_logging, default_format
from custody.observability.metrics import InstrumentedStore, refresh_queue_depth, start_metrics_listener
from custody.observability.systemd import SystemdNotifier
from custody.store.base import Store

# Tests of expiry and time-locks move the daemon's clock forward by writing a number of seconds into the file
# this variable names. It exists for tests only; the daemon warns loudly when it is set.
LOG_LEVEL_VARIABLE = "CUSTODY_LOG_LEVEL"
TOKEN_NOT_AVAILABLE = "the HSM token is not available yet"  # noqa: S105 -- a message, not a secret

log = logging.getLogger("custody")
# Start and stop lines are logged whatever CUSTODY_LOG_LEVEL says: scripts and tests read the listening line
# to learn the port, and an operator needs to see when the daemon came and went.
lifecycle_log = logging.getLogger("custody.lifecycle")
lifecycle_log.setLevel(logging.INFO)


def build_custody(config: ServerConfig, hsm: Hsm, policy_document: str) -> tuple[Custody, Store]:
    """Open the store over an open HSM, open the audit log, seed the policy and verify the keys; returns the
    application and the store it uses."""
    # Imported here so that tools which only parse configuration never load a database driver.
    from custody.store import open_store

    store: Store = InstrumentedStore(open_store(config.database_url, config.base_dir))
    custody = Custody(
        store=store,
        hsm=hsm,
        clock=utc_now,
        checkpoint_every=config.limits.audit_checkpoint_every,
        checkpoint_interval=timedelta(seconds=config.limits.audit_checkpoint_interval_seconds),
        sign_in_write_transaction=config.hsm.sign_in_write_transaction,
    )
    try:
        custody.audit.open()
        custody.policy.seed(policy_document, str(config.policy_file))
        custody.keys.verify_keys_in_hsm()
    except BaseException:
        custody.close()
        raise
    return custody, store


def retire_token_state_of(config_path: Path, seal_key_ids: Collection[str]) -> TokenState:
    """Retire the sealed state the daemon's HSM token holds (its seal keys and anchors), the operator naming
    every seal key; see custody/app/anchor.py. Opens the token as the daemon does, with its PIN."""
    config = load_server_config(config_path)
    os.environ.update(config.hsm.environment)
    from custody.hsm.pkcs11 import Pkcs11Hsm

    hsm = Pkcs11Hsm(config.hsm.module, config.hsm.token_label, read_hsm_pin(config.hsm))
    try:
        return retire_token_state(hsm, seal_key_ids)
    finally:
        hsm.close()


def hsm_opener(hsm_config: HsmConfig, pin: str) -> Callable[[], Hsm]:
    """A factory for the HSM adapter. Every call after the first initializes the PKCS#11 library anew before
    it looks for the token, so a token that appeared, or came back, since the last call is found.

    Raises HsmUnavailable while the token is absent, ConfigurationError for what waiting cannot fix.
    """
    calls = 0

    def open_hsm() -> Hsm:
        nonlocal calls
        calls += 1
        if not _token_present(hsm_config.module, hsm_config.token_label, rescan=calls > 1):
            raise HsmUnavailable(
                f"no token labelled {hsm_config.token_label!r} is present in the PKCS#11 library"
                f" {hsm_config.module}"
            )
        if hsm_config.lanes > 1:
            from custody.hsm.lanes import LaneHsm

            return LaneHsm(
                hsm_config.module,
                hsm_config.token_label,
                pin,
                hsm_config.lanes,
                environment=dict(hsm_config.environment),
            )
        from custody.hsm.pkcs11 import Pkcs11Hsm

        return Pkcs11Hsm(hsm_config.module, hsm_config.token_label, pin)

    return open_hsm


def _token_present(module: str, token_label: str, *, rescan: bool) -> bool:
    """Whether the library shows a token labelled ``token_label``; ``rescan`` initializes the library anew
    first (C_Finalize, C_Initialize), which is when SoftHSM2 reads its token directory again."""
    import pkcs11
    from pkcs11 import exceptions as p11

    from custody.hsm.pkcs11_common import lock_for_library, require_library_file

    with lock_for_library(require_library_file(module)):
        try:
            library = pkcs11.lib(module)
            if rescan:
                library.reinitialize()
            library.get_token(token_label=token_label)
        except p11.MultipleTokensReturned:
            return True  # The adapter refuses this with its own message.
        except p11.PKCS11Error:
            return False
    return True


class Daemon:
    """The running daemon's parts, and the application once it is built."""

    def __init__(self, config: ServerConfig, hsm: InstrumentedHsm) -> None:
        self.config = config
        self.hsm = hsm
        self._custody: Custody | None = None
        self._store: Store | None = None

    @property
    def custody(self) -> Custody | None:
        return self._custody

    def install(self, built: tuple[Custody, Store]) -> None:
        self._custody, self._store = built

    def custody_for_call(self) -> Custody:
        custody = self._custody
        if custody is None:
            raise HsmUnavailable(f"{TOKEN_NOT_AVAILABLE}; try again later")
        return custody

    def check_health(self) -> Health:
        """The health check the monitor runs: reopens an HSM that is not healthy and refreshes queue depth."""
        custody = self._custody
        if custody is None:
            return Health(
                hsm_ok=False,
                store_ok=False,
                detail=f"waiting for the HSM token {self.config.hsm.token_label!r}"
                " (the database is opened once it is there)",
            )
        health_now = custody.health()
        if not health_now.hsm_ok and self.hsm.reopen():
            health_now = custody.health()
        if health_now.store_ok and self._store is not None:
            try:
                refresh_queue_depth(self._store)
            except CustodyError as exc:
                log.warning("could not count the waiting requests: %s", exc.message)
        return health_now

    def close(self) -> None:
        if self._custody is not None:
            self._custody.close()
        else:
            self.hsm.close()


def serve(
    config_path: Path,
    listen: str | None,
    metrics_listen: str | None = None,
    jsonrpc_listen: str | None = None,
) -> int:
    """Run the daemon in the foreground. Returns the process exit code: 0 after a clean SIGTERM or SIGINT,
    EXIT_START_TEMPORARY_FAILURE (75) when the HSM or the database could not be reached at start, and
    EXIT_START_REFUSED (2) for every other refusal to start."""
    level = os.environ.get(LOG_LEVEL_VARIABLE, "INFO")
    configure_logging(default_format(), level)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del frame
        lifecycle_log.info("received %s; finishing in-flight calls", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    notifier = SystemdNotifier()
    try:
        config = with_listener_overrides(
            load_server_config(config_path),
            listen=listen,
            metrics_listen=metrics_listen,
            jsonrpc_listen=jsonrpc_listen,
        )
        configure_logging(config.logging.format, level)
        return _run(config, config.listen, stop, notifier)
    except CustodyError as exc:
        # One plain line, whatever the log format: it may come before the configuration could be read.
        print(f"custody: cannot start: {exc.message}", file=sys.stderr, flush=True)
        notifier.send(f"STATUS=cannot start: {exc.message}")
        # An unreachable HSM or database may be back in a minute, and a restart then starts the daemon; a
        # restart cannot fix anything else (and retrying a wrong PIN would spend the token's login attempts).
        return EXIT_START_TEMPORARY_FAILURE if isinstance(exc, Unavailable) else EXIT_START_REFUSED


def _run(config: ServerConfig, address: str, stop: threading.Event, notifier: SystemdNotifier) -> int:
    try:
        policy_document = config.policy_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the policy file {config.policy_file}: {exc}") from None
    # PKCS#11 libraries read their own configuration (SOFTHSM2_CONF, vendor client settings) from the
    # environment when they are loaded, so it is set before the first load.
    os.environ.update(config.hsm.environment)
    hsm = InstrumentedHsm(
        hsm_opener(config.hsm, read_hsm_pin(config.hsm)), not_open_detail=TOKEN_NOT_AVAILABLE
    )
    daemon = Daemon(config, hsm)
    stop_metrics: Callable[[], None] | None = None
    running: RunningServer | None = None
    jsonrpc: RunningJsonRpc | None = None
    try:
        if not config.hsm.wait_for_token:
            hsm.open()
            daemon.install(build_custody(config, hsm, policy_document))
        if config.metrics.listen is not None:
            metrics_host, metrics_port, stop_metrics = start_metrics_listener(config.metrics.listen)
            lifecycle_log.info("metrics listening on %s:%d", metrics_host, metrics_port)
        running = start_server(
            daemon.custody_for_call,
            config,
            address,
            daemon.check_health,
            on_health_change=lambda health: notifier.status(
                "serving" if health.serving else f"not serving: {health.detail}"
            ),
        )
        host = address.rpartition(":")[0]
        if config.jsonrpc.listen is not None:
            jsonrpc = start_jsonrpc_server(daemon.custody_for_call, config, config.jsonrpc.listen)
        # Only once every listener is bound: a daemon that then refuses to start must not have said it listens.
        # Tests and scripts read this line to learn the port when they asked for port 0.
        lifecycle_log.info("custody listening on %s:%d (mTLS required)", host, running.port)
        if jsonrpc is not None and config.jsonrpc.listen is not None:
            # Tests and scripts read this line to learn the JSON-RPC port when they asked for port 0.
            lifecycle_log.info(
                "custody JSON-RPC listening on %s:%d (%s)",
                config.jsonrpc.listen.rpartition(":")[0],
                jsonrpc.port,
                "plain HTTP, loopback only" if config.jsonrpc.plain_http else "TLS",
            )
        if daemon.custody is None and not _wait_for_token(daemon, policy_document, stop, notifier):
            return 0
        assert daemon.custody is not None
        daemon.custody.start_background_work(config.limits.worker_interval_seconds)
        running.health_monitor.check()
        notifier.ready(f"serving on {host}:{running.port}")
        # The watchdog is fed while the health monitor's loop turns, not while the checks pass: an HSM or
        # database outage is reported by the health service and ridden out, since a restart during one would
        # only fail to start; a daemon whose loop is stuck is hung, and systemd restarts it.
        notifier.start_watchdog(running.health_monitor.working)
        # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
        while not stop.wait(1.0):
            pass
        return 0
    finally:
        notifier.stopping()
        if jsonrpc is not None:
            jsonrpc.stop(config.limits.shutdown_grace_seconds)
        if running is not None:
            running.stop(config.limits.shutdown_grace_seconds)
        daemon.close()
        if stop_metrics is not None:
            stop_metrics()
        if running is not None:
            lifecycle_log.info("custody stopped")


def _wait_for_token(
    daemon: Daemon, policy_document: str, stop: threading.Event, notifier: SystemdNotifier
) -> bool:
    """Try the token every ``wait_seconds`` until it is there, then build the application; False when told
    to stop first. Errors that waiting cannot fix (a refused PIN, a bad audit log) raise."""
    config = daemon.config
    label = config.hsm.token_label
    lifecycle_log.warning(
        "waiting for the HSM token %r; every custody call answers UNAVAILABLE until then", label
    )
    notifier.status(f"waiting for the HSM token {label!r}")
    while True:
        try:
            daemon.hsm.open()
        except HsmUnavailable as exc:
            log.debug("the HSM token is still not available: %s", exc.message)
            if stop.wait(config.hsm.wait_seconds):
                return False
            continue
        break
    lifecycle_log.info("the HSM token %r is available; opening the database and the audit log", label)
    daemon.install(build_custody(config, daemon.hsm, policy_document))
    return True
