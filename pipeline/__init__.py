"""wordsmile core: config, manifests, workspace, cache, records, assembly, release, CLI."""
