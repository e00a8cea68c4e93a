

def test_an_ann_index_before_the_model_does_not_crash():
    """`import usearch.index; import onnxruntime` segfaults; the index module loads
    onnxruntime first, so any order of use is safe (a fresh interpreter proves it)."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from indexer.vectors import _new_index\n_new_index()\n"
            "from indexer.embed import shared_embedder\n"
            "print(len(shared_embedder().embed_query('ok')))" % str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == b"384", proc.stderr[-2000:]
