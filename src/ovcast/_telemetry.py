"""OpenVINO's usage telemetry, declined unless the user chose otherwise: a forecasting box
does not phone home.

``import openvino`` and every ``openvino.convert_model`` send usage events to Google
Analytics (the ``openvino-telemetry`` package, a dependency of ``openvino``) while no
decision is recorded. On Linux each send forks a process from a worker thread; in a process
that has imported torch the forked child aborts ("Fatal Python error: Aborted").

OpenVINO's documented switch is the consent file that ``opt_in_out --opt_out`` writes
(``~/intel/openvino_telemetry`` holding ``0``; docs.openvino.ai, "OpenVINO Telemetry").
Where no decision is recorded, ovcast records that opt-out with the telemetry package's own
consent checker (without the farewell event ``opt_in_out`` itself sends). A decision already
recorded is kept: ``opt_in_out --opt_in`` turns telemetry back on, and ovcast leaves it on.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def decline_openvino_telemetry() -> str:
    """Record OpenVINO's telemetry opt-out if no decision exists; returns the decision now
    in force: 'declined', 'accepted' (the user opted in), 'absent' (no telemetry package)
    or 'undecided' (the consent file could not be written)."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return "absent"
    checker = OptInChecker()
    try:
        decision = checker.check(enable_opt_in_dialog=False)
        if decision is ConsentCheckResult.NO_FILE:
            if not checker.update_result(ConsentCheckResult.DECLINED):
                log.warning(
                    "could not record OpenVINO's telemetry opt-out in %s; run "
                    "'opt_in_out --opt_out' as this user to stop OpenVINO's usage reports",
                    checker.consent_file(),
                )
                return "undecided"
            log.info("recorded OpenVINO's telemetry opt-out in %s", checker.consent_file())
            return "declined"
    except Exception as exc:  # the telemetry package must never stop ovcast
        log.debug("OpenVINO telemetry consent check failed: %r", exc)
        return "undecided"
    return "accepted" if decision is ConsentCheckResult.ACCEPTED else "declined"
