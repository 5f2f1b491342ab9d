"""From expression codes to a dataset and a release: the assemble stage (filters, splits, card, report)
and release / verify / publish. Imports only pipeline/."""
