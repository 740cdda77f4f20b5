"""loadgen: the handbook's transaction simulator, an open-loop replayer, an end-to-end measurer.

- :mod:`loadgen.simulator` simulates labelled transactions (Le Borgne et al., chapter 3);
- :mod:`loadgen.stream` merges transactions and their delayed labels in event time and encodes
  them; :mod:`loadgen.pacing` decides when each message is due; :mod:`loadgen.replay` sends;
- :mod:`loadgen.measure` consumes the scores; :mod:`loadgen.accounting` and
  :mod:`loadgen.latency` hold its math; :mod:`loadgen.report` writes the JSON and the chart;
- :mod:`loadgen.run` replays and measures together; :mod:`loadgen.cli` is the command line.
"""
