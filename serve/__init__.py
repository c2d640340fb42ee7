"""kit.serve: quantize, OpenAI-compatible servers and the Streamlit compare page."""
