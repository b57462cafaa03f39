import time, os, sys, torch
os.environ["TQDM_DISABLE"]="1"
torch.set_num_threads(1)
from examples import pareto, compare
c = pareto._corpus(pareto.Budget())
for steps, batch, L, lr in [tuple(map(float, a.split(":"))) for a in sys.argv[1:]]:
    steps, batch, L = int(steps), int(batch), int(L)
    w, m = pareto.matched_model("R", pareto.SIZES[os.environ.get("SZ","small")], 0, L)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(0); t=time.perf_counter()
    for _ in range(steps):
        s = torch.randint(0, len(c.train)-L-1, (batch,), generator=g)
        x = torch.stack([c.train[i:i+L+1] for i in s.tolist()])
        loss = m.loss(x); opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    tt=time.perf_counter()-t
    m.eval(); win = c.val[: (len(c.val)-1)//(L+1)*(L+1)].view(-1, L+1)
    with torch.no_grad(): bits = sum(m.loss(wb).item()*len(wb) for wb in win.split(64))/len(win)/0.6931
    print(f"steps {steps} batch {batch} L {L} lr {lr}: {bits:.3f} bits, {tt:.0f}s, {steps*batch*L/tt:.0f} tok/s", flush=True)
