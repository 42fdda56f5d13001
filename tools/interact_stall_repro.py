"""Reproducer for the execute_reply stall on ipywidgets.interact cells (see requirements.txt).

nbclient's stand-in for the Output widget answers every output captured by an `interact` with a
comm_msg on the shell channel while another coroutine awaits that channel's execute_reply.
jupyter_client 7.4.2 and later send it synchronously through a blocking shadow of the asyncio
socket; the send processes the socket's pending commands, which clears the edge-triggered zmq
FD, and pyzmq's asyncio layer (which re-checks after its own sends) is not told. If the reply
arrived just then, it waits in the socket until the cell's timeout expires.

This builds a notebook of N interact cells (each prints and plots through the widget),
executes it R times from fresh kernels with NotebookClient and a short cell timeout, and counts
the cells whose execute_reply reached nbclient more than timeout/2 after the kernel sent it.
It runs on whatever venv runs it, so candidate pins can be checked before a bump:

    python tools/interact_stall_repro.py --runs 30 --cells 30 --timeout 20

It stalls more often when the machine is busy; compare pins in alternation, not one after the
other.
"""
import argparse
import datetime as dt
import time

import nbformat
from nbclient import NotebookClient

SETUP = """\
import ipywidgets as widgets
import matplotlib.pyplot as plt
%matplotlib inline
def show(shift=0.0, scale=1.0):
    print("shift", shift)
    print("scale", scale)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [shift, scale, shift * scale])
    plt.show()
    print("done")
"""
CELL = """\
widgets.interact(show, shift=widgets.FloatSlider(value=0.5, min=-2.0, max=2.0, step=0.1),
                 scale=widgets.FloatLogSlider(value=2.0, base=10, min=-1, max=1, step=0.05));
"""


def run_once(cells: int, timeout: int) -> list[tuple[int, float]]:
    """Execute the notebook once; return (cell index, execute_reply delay in s) per cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    nb.cells += [nbformat.v4.new_code_cell(CELL) for _ in range(cells)]
    delays = []

    def on_cell_executed(cell, cell_index, execute_reply):
        sent = execute_reply["header"]["date"]
        if isinstance(sent, str):
            sent = dt.datetime.fromisoformat(sent)
        delays.append((cell_index, time.time() - sent.timestamp()))

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   on_cell_executed=on_cell_executed).execute()
    return delays[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cells", type=int, default=30)
    parser.add_argument("--timeout", type=int, default=20, help="seconds per cell")
    args = parser.parse_args()
    import ipykernel
    import jupyter_client
    import nbclient
    import zmq
    print(f"ipykernel {ipykernel.__version__}, jupyter_client {jupyter_client.__version__}, "
          f"nbclient {nbclient.__version__}, pyzmq {zmq.__version__}", flush=True)
    stalls = total = 0
    for run in range(args.runs):
        delays = run_once(args.cells, args.timeout)
        stalled = [(i, round(d, 1)) for i, d in delays if d > args.timeout / 2]
        stalls += len(stalled)
        total += len(delays)
        print(f"run {run}: longest reply delay {max(d for _, d in delays):.3f} s, "
              f"stalled cells {stalled}", flush=True)
    print(f"{stalls} stalls in {total} interact cells", flush=True)


if __name__ == "__main__":
    main()
