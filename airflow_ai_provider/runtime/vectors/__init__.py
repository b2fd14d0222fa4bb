"""Embedding outputs: content hashes, incremental reuse of an earlier output, and the vector index.

- :mod:`.content`: each row's ``content_hash`` and the shard's order-independent ``content_digest``;
- :mod:`.previous`: an earlier output folder read back as a bounded hash index of its rows;
- :mod:`.rows`: one input batch scored into output rows, unchanged rows copied from the earlier output;
- :mod:`.index`: the FAISS index of a vector column, its search check and its atomic publication.
"""
