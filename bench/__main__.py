"""``python -m bench [--quick] [--events N] [--reps K]``: run every row, write the results."""

from __future__ import annotations

import argparse
from typing import Any

from bench.harness import run_all
from bench.results_io import write_results


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    limit = rows["transport"]["events_per_s"]
    quix = rows["quix"]["events_per_s"]
    names = {
        "transport": "limit: plain consume/decode/encode/produce",
        "quix": "peer: Quix Streams, per-event model",
        "naive": "peer: confluent loop, per-event model",
        "worker": "stream-infer worker (features + batched model)",
        "worker_eos": f"same, exactly-once, on {result['exactly_once']['broker']}",
        "worker_shadow": "same, at-least-once, plus a shadow version",
        "worker_procs_1": "`stream-infer worker --processes 1` (timed from its scores)",
        "worker_procs_2": "`stream-infer worker --processes 2` (timed from its scores)",
    }
    lines = [
        f"{result['events']:,} events, median of {result['reps']}; {result['machine']}",
        "",
        "| row | events/s | vs transport | vs Quix | CPU s / 1k events | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        r = rows[key]
        lines.append(
            f"| {label} | {r['events_per_s']:,.0f} | {r['events_per_s'] / limit:.2f} | "
            f"{r['events_per_s'] / quix:.2f} | {r['cpu_s_per_1000']:.3f} | {r['peak_rss_mb']:.0f} |"
        )
    apache = result["apache"]
    a_rows, a_limit = apache["rows"], apache["rows"]["transport"]["events_per_s"]
    for key in ("transport", "worker", "worker_eos"):
        r = a_rows[key]
        lines.append(
            f"| {names[key].split(' on ')[0].rstrip(',')}, on {apache['broker']} | "
            f"{r['events_per_s']:,.0f} | "
            f"{r['events_per_s'] / a_limit:.2f} (its own transport) | | "
            f"{r['cpu_s_per_1000']:.3f} | {r['peak_rss_mb']:.0f} |"
        )
    m = result["model_limit"]
    lat, floor = result["latency_at_half_max"], result["broker_two_hops_at_half_max"]
    lat_at = {"half": lat, "quarter": result["latency_at_quarter_max"]}
    floor_at = {"half": floor, "quarter": result["broker_two_hops_at_quarter_max"]}
    eos, shadow, swap = result["exactly_once"], result["shadow"], result["hot_swap"]
    scale = result["scale_out"]
    txns = eos["transactions"]
    lines += [
        "",
        "Peak RSS: each row's own processes, the kernel's high-water mark (VmHWM; for "
        "`--processes 2` summed over the supervisor and both workers, "
        f"{rows['worker_procs_2']['processes']} processes, shared pages counted in each).",
        "",
        "| latency, open loop, from intended send time | offered /s | kept up /s | p50 ms "
        "| p99 ms | p99.9 ms | missing |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for share in ("half", "quarter"):
        pct = "50%" if share == "half" else "25%"
        for label, r in (
            (f"stream-infer worker (max_wait_ms=5), {pct} of its max", lat_at[share]),
            ("broker floor: producer -> relay -> consumer, no work, same rate", floor_at[share]),
        ):
            lines.append(
                f"| {label} | {r['rate']:,.0f} | {r['received_per_s']:,.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p99.9_ms']:.1f} | {r['missing']} |"
            )
    lines += [
        "",
        f"- model limit (ONNX Runtime, 1 thread): {m['rows_per_s_batch_1']:,.0f} rows/s "
        f"at batch 1, {m['rows_per_s_batch_512']:,.0f} rows/s at batch 512",
        f"- features: {result['features_us_per_event']:.2f} µs/event "
        "(worker thread, in-memory state); a repository unlike the fraud example "
        "(bench/own_repo.py: 10 stream features incl. min/max/stddev over 10 min and 2 days, "
        "2 daily): "
        f"{result['own_repo_features_us_per_event']:.2f} µs/event",
        f"- latency at 50% of max, worker vs the broker's two hops: p50 {lat['p50_ms']:.1f} vs "
        f"{floor['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} vs {floor['p99_ms']:.1f} ms, "
        f"p99.9 {lat['p99.9_ms']:.1f} vs {floor['p99.9_ms']:.1f} ms",
        f"- 2 worker processes vs 1 (both `stream-infer worker`, timed alike): "
        f"{scale['vs_one_process']:.2f}x (per run {scale['runs_vs_one_process']}; "
        f"{scale['partitions']} partitions, assigned {scale['assignments']}; timed from "
        f"{sorted(set(scale['measured_from']))}); the broker, this harness and the workers share "
        f"{result['machine']['cores']} cores",
        f"- exactly-once vs at-least-once ({eos['broker']}, transactions every "
        f"{eos['transaction_interval_ms']:.0f} ms): {eos['vs_at_least_once']:.2f}x "
        f"(per run {eos['runs_vs_at_least_once']}; transactions committed "
        f"{[t['committed'] for t in txns]}, aborted {[t['aborted'] for t in txns]}; "
        f"events per batch {rows['worker_eos']['events_per_batch']:.0f} vs "
        f"{rows['worker']['events_per_batch']:.0f})",
        f"- exactly-once vs at-least-once on {apache['broker']}, which isolates transactions: "
        f"{apache['exactly_once']['vs_at_least_once']:.2f}x (per run "
        f"{apache['exactly_once']['runs_vs_at_least_once']}; transactions committed "
        f"{[t['committed'] for t in apache['exactly_once']['transactions']]}, aborted "
        f"{[t['aborted'] for t in apache['exactly_once']['transactions']]})",
        f"- shadow scoring vs none: {shadow['vs_no_shadow']:.2f}x "
        f"(per run {shadow['runs_vs_no_shadow']}); scores-shadow got "
        f"{[c['records'] for c in shadow['scores_shadow']]} records, "
        f"{[c['transactions'] for c in shadow['scores_shadow']]} distinct, "
        f"for {shadow['events']:,} events",
        f"- hot swap at {swap['runs'][0]['rate']:,.0f}/s (median of {len(swap['runs'])}): "
        f"promote to first v2 score {swap['to_v2_s']:.2f} s; longest scored_at gap "
        f"{swap['gap_ms_swap']:.0f} ms in the {swap['runs'][0]['window_s']:.0f} s from the "
        f"promote vs {swap['gap_ms_before']:.0f} ms in the same span before it (arrival here: "
        f"{swap['arrival_gap_ms_swap']:.0f} vs {swap['arrival_gap_ms_before']:.0f} ms)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smoke test: small, one repetition")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--reps", type=int, default=3)
    ns = parser.parse_args()
    result = run_all(ns.quick, ns.events, ns.reps)
    table = markdown(result)
    print(table)
    write_results("", result, table)


if __name__ == "__main__":
    main()
