"""The learning replay on Results: a fixed panel of test digits, as the model read them after
each epoch of training (recorded by `mnist_core.ml.train`)."""

import numpy as np
import streamlit as st

from mnist_core.evaluate import replay_frame
from mnist_core.figures import gallery_html, replay_figure


def learning_replay(run, images: np.ndarray, labels: np.ndarray) -> None:
    """An epoch slider over the run's replay panel, and each digit's certainty over epochs."""
    st.header("Learning replay")
    replay = run.replay()
    if replay is None:
        st.caption("This run was saved without a learning replay (runs trained here have one).")
        return
    indices, answers = replay
    epochs = len(answers)
    if epochs > 1:
        epoch = st.slider("Epoch", 1, epochs, epochs, key="results_replay_epoch")
    else:
        epoch = 1
    frame = replay_frame(indices, answers, labels, epoch)
    st.caption(
        f"After epoch {epoch} of {epochs}: {frame.right} of {len(indices)} panel digits read "
        "right. Move the slider to replay how the model learned them."
    )
    st.html(gallery_html(images, indices, labels, frame.predicted, frame.confidence))
    with st.expander("Certainty of each panel digit, epoch by epoch"):
        st.plotly_chart(replay_figure(answers, labels[indices]), key="results_replay_chart")
