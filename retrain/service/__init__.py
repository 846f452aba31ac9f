"""The service the triggers call: decide, then act (claim, submit, sweep), and its HTTP face.

``core`` holds ``RetrainService``; ``submission`` starts runs exactly once; ``sweep`` records how
active runs stand; ``http_api`` maps results and the error tree to HTTP answers.
"""
