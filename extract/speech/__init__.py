"""Speech: hear each video (Silero VAD + Whisper through faster-whisper), transcribe it where no text
is given, and move given spans to where their words are said (docs/speech.md)."""
import os

# ONNX Runtime 1.32 (Silero VAD runs on it) has 1DS telemetry on by default: it writes a device-id file
# `.ses` into TMPDIR and would report usage. An offline dataset tool does neither; set before any import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
