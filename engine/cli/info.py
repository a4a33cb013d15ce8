"""`info`: the model card of a model of either kind."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run, language


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    if language.is_language(args):
        return language.cmd_info(args)
    return _image(args)


def _image(args) -> int:
    from dataclasses import asdict

    from engine.core.units import human_bytes, human_count
    from engine.jobs.image import LoadModelJob

    card = _run(LoadModelJob(args.model), args)
    if args.json:
        d = asdict(card)
        d["bits_per_weight"] = card.bits_per_weight
        print(json.dumps(d, indent=2))
        return 0
    print(f"{card.name}  ({card.arch}, {card.recipe})  {card.path}")
    print(
        f"  input {card.input_shape}, {len(card.labels)} classes, {card.params:,} parameters, "
        f"{human_bytes(card.bytes)} of weights, {human_bytes(card.size_on_disk)} on disk, "
        f"{card.bits_per_weight:.2f} bits/weight, {human_count(card.macs)} MACs per image"
    )
    for r in card.layers:
        print(
            f"  {r.name:<16}{r.type:<26}{str(r.shape):<20}{r.format:<12}{r.params:>9,}{human_bytes(r.bytes):>10}"
            f"{human_count(r.macs):>10}"
        )
    return 0
