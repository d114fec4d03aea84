"""Launchers: the runs of an experiment train here (``local``), on Slurm (``slurm``) or on Ray (``ray``).

:mod:`reslab.experiments.launch.base` holds what every launcher shares (:class:`LaunchSettings`,
``make_launcher``, what a worker runs); each engine has its own module, imported only when a
command asks for it, so ``reslab --help`` and local runs never import Ray or submitit.
"""
