"""The retrieval service (:8003): ingestion, chunking, embeddings, hybrid Qdrant search
and live HTTP sources. Run it with `python -m retrieval_server`."""
