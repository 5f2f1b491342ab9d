"""Media, sources, transcripts, faces and expression backends."""
