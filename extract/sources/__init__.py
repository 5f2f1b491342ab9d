"""Source readers of the ingest stage, one per manifest kind (docs/sources.md): `youtube` (yt-dlp),
`meld`, `memor`, `table`, `folder`; `common` holds the segment row, time parsing and the URL policy."""
