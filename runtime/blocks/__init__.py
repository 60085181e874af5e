"""The blocks part: one block per agent pane, its output, stats, archives and the sweep."""
