"""kit: a role-play fine-tuning workshop kit (InternLM2 + XTuner + LMDeploy + Streamlit)."""

__version__ = "0.1.0"
