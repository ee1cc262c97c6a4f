"""The evaluation harness: a grid of strategies and budgets over a task set, stored resumably
(`grid`), summarised with bootstrap intervals per difficulty bin (`metrics`), and reported as HTML
with figures and a markdown table (`report`)."""
