"""``ecgsoup models``: the backbones, their layers and licences, and where their weights are looked for."""

from __future__ import annotations

from ecgsoup.cli.common import EXIT_OK

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="the backbones ecgsoup runs: families, layers, licences, where to get weights")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ecgsoup.backbones import families, list_backbones, model_home

    table = list_backbones()
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return EXIT_OK
    print(f"{'name':<24} {'family':<11} {'layers':>6}  {'widths':<34} {'licence':<13} weights")
    for row in table.itertuples():
        present = "present" if row.present else f"absent: {row.download}"
        print(f"{row.name:<24} {row.family:<11} {row.layers:>6}  {row.widths[:34]:<34} {row.license:<13} {present}")
    print(f"\nRegistered weights are looked for in {model_home()}/<name>/ (set ECGSOUP_MODEL_HOME); "
          "ecgsoup never downloads them.")  # fmt: skip
    print("An original file also loads directly: --model <family>:<path>, families: "
          + ", ".join(families()) + ". Choose a named contract with @<name>, e.g. hubert-ecg:<folder>@benchmark.")
    for family, entry in families().items():
        contracts = ", ".join(f"{n}{' (default)' if n == entry.default_contract else ''}" for n in entry.contracts)
        print(f"  {family}: {entry.card.license}; contracts {contracts}")
    return EXIT_OK
