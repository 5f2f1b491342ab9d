"""Speech: hear each video (Silero VAD + Whisper through faster-whisper), transcribe it where no text
is given, and move given spans to where their words are said (docs/speech.md)."""
