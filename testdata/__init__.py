"""Generated test media (`wordsmile testdata make`) and the bad-input corpus: kept apart from the
extraction code they exercise."""
