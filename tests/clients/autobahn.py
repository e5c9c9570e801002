"""Runs Autobahn TestSuite cases against a WebSocket server with kosoku (the Autobahn
case files on a Rust runner; the classic wstest needs Python 2).

    python autobahn.py <ws-url> <cases> [<excluded cases>] [<report dir>]

<cases> and <excluded cases> are comma-separated case ids or globs (`1.*,10.*`).
Prints one JSON object per case on stdout (id, Autobahn's verdicts, its explanation)
and writes kosoku's HTML/JSON report to <report dir> when given. Exits 0 once every
case has run, whatever the verdicts: grading is the caller's (tests/autobahn.rs).
"""

import asyncio
import json
import sys

from kosoku import FailureError, run_fuzzingclient
from kosoku._report import write_reports


def split(arg):
    return [c for c in arg.split(",") if c] or None


async def main():
    url, cases = sys.argv[1], split(sys.argv[2])
    exclude = split(sys.argv[3]) if len(sys.argv) > 3 else None
    outdir = sys.argv[4] if len(sys.argv) > 4 else None
    try:
        results = await run_fuzzingclient(url, cases, exclude, concurrency=4)
    except FailureError as failure:
        results = failure.results
    if outdir:
        write_reports(results, outdir)
    for r in results:
        print(
            json.dumps(
                {
                    "case": r.case_id,
                    "behavior": r.behavior.value,
                    "behaviorClose": r.behavior_close.value,
                    "result": r.result,
                    "resultClose": r.result_close,
                    "remoteCloseCode": r.remote_close_code,
                    "durationMs": r.duration,
                }
            ),
            flush=True,
        )


asyncio.run(main())
