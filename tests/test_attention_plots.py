"""The attention figures are drawn without pyplot and written as PNG."""

import numpy as np

import turnpike.attention as ta


def test_figures_are_written(tmp_path):
    traj = ta.simulate(ta.SelfAttention(2, beta=1.0), ta.random_sphere((2, 8), 2, seed=0), np.linspace(0, 2, 5))
    ta.plot_circle_tokens(traj, tmp_path / "circle.png")
    s3 = ta.simulate(ta.SelfAttention(3, beta=1.0), ta.random_sphere((8,), 3, seed=0), np.linspace(0, 2, 3))
    ta.plot_sphere_tokens(s3, tmp_path / "sphere.png")
    run = ta.metastable_run(16, 4.0, t_max=100.0, points=21)
    ta.plot_clusters_energy([run], tmp_path / "clusters.png")
    diag = ta.phase_diagram([0.5, 2.0], np.linspace(0, 2, 3), n=6, runs=4)
    assert diag.probability.shape == (2, 3) and np.all((diag.probability >= 0) & (diag.probability <= 1))
    ta.plot_phase_diagram(diag, tmp_path / "phase.png")
    ta.plot_attention_matrix([np.eye(3)], [0.0], tmp_path / "attention.png")
    for name in ("circle", "sphere", "clusters", "phase", "attention"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_attention_matrix_ticks_are_token_indices():
    """Ticks at integer positions only, labelled with the token shown there (the leaders figure had 2.5, 7.5...)."""
    for n in (5, 20, 40):
        order = np.random.default_rng(0).permutation(n)
        fig = ta.plot_attention_matrix([np.eye(n)], [0.0], order=order)
        ax = fig.axes[0]
        fig.canvas.draw()
        for axis in (ax.xaxis, ax.yaxis):
            shown = [(p, label.get_text()) for p, label in zip(axis.get_majorticklocs(), axis.get_ticklabels(),
                                                              strict=True) if 0 <= p < n]
            assert shown and all(p == int(p) and text == str(order[int(p)]) for p, text in shown)
