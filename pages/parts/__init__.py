"""The parts the pages share: session state and cached resources (`app_state`), the Train
form's state (`train_form`), and the sections of pages (`*_view`: sweeps, drawings,
explanations, learning replay, sharing). `pages/` itself holds only the four pages."""
