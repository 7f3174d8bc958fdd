"""A bounded memo keyed by object identity, for results derived from a jaxpr (its
JVP, its transpose, generated code). The object is kept alive with its entry, so
its id cannot be reused while the entry exists."""
from collections import OrderedDict


class Memo:
    def __init__(self, size=1024):
        self.size = size
        self.entries = OrderedDict()

    def get(self, obj, key, build):
        k = (id(obj), key)
        hit = self.entries.get(k)
        if hit is not None and hit[0] is obj:
            self.entries.move_to_end(k)
            return hit[1]
        value = build()
        self.entries[k] = (obj, value)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value
