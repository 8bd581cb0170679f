"""Evaluation of generated talking-head videos with the paper's metrics (Table 1).

FID (:mod:`.fid`), CPBD (:mod:`.cpbd`), LMD (:mod:`.lmd`), AVOff/AVConf (:mod:`.syncnet`, crops from
:mod:`.tracking`), reports (:mod:`.report`) and the ``avct evaluate`` entry point
(:mod:`avct.eval.evaluate`: ``evaluate()``; :mod:`avct.cli.evaluate`: ``cmd_evaluate()``, ``add_evaluate_parser()``).
Nothing is imported here, so ``import avct.eval`` stays cheap (no torch models, no matplotlib).
"""
