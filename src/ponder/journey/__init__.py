"""Journey learning (the o1 replication's): long thoughts built from ponder's own search trees.

`trees` runs a tree strategy on training questions and stores each tree with its leaves checked; `build` turns a
stored tree into a shortcut (the verified right path only) and a journey (explored wrong branches first, each
followed by a reflection and a return to where it branched, then the right path), in the trainer's SFT format.
"""
