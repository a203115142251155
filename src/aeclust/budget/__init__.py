"""``--budget``: a run planned from its own measured speed, so that it ends within a given time.

In layers: :mod:`~aeclust.budget.durations` (what the user writes), :mod:`~aeclust.budget.plan` (the plan file),
:mod:`~aeclust.budget.costs` (pure arithmetic), :mod:`~aeclust.budget.clock` (time left) and
:mod:`~aeclust.budget.measure` (timing each stage's own step); the pipeline calls them, and no stage calls them.

Before training, the run times its own first steps on this machine and device (a few training batches, a few
refinement batches, an encoding pass, a clustering of a sample) with a throwaway copy of its model, then
:func:`aeclust.budget.costs.plan_budget` sets what grows with time: the training epochs (and the one-cycle schedule
over them, which is planned from the epochs), how often the history measures the train MSE, and, for budgets too
short to hold it, the refinement; a plan that trains long enough clusters on whitened dimensions instead of refining
(:func:`aeclust.budget.costs.whitens_instead_of_refining`). After the first epoch,
:func:`aeclust.budget.costs.replan_after_first_epoch` plans again from that epoch's real time: a few steps timed
while the machine was briefly slower (or faster) than it then runs would otherwise set every epoch after them
(docs/results.md, sections 19–20); and a third of the way through, :func:`aeclust.budget.costs.replan_midway` plans
the rest from the epochs' own mean time, and again two thirds and five sixths of the way, each from the epochs since
the plan before, since later epochs drift from the first's and a machine's speed can change part-way through
(sections 24, 25 and 29). The plan is written into the run's settings (``config.json``) and ``budget.json``, so a
resumed run continues the same plan and the same seed with the same plan gives the same clusters; ``budget.json``
also lists the settings that repeat the plan without measuring.

What does not grow: the model's width and its views' size. Wider models and full-size views cost more per epoch than
they gave back in accuracy within the times measured (docs/results.md, sections 11–12); epochs are what improved
every set (section 13). At 20 minutes twice the width, at half the epochs, was level on one set and ahead on another
by one seed's spread (section 23), and at an hour its features were the default's (a linear probe of 0.920 against
0.918, section 25). Where it refines, the refinement stays at its configured epochs: 6 epochs gave no more than 3
(sections 7 and 21), and self-labelling lowered accuracy (section 8).
"""
