# Offline comparison of gate features and kinds (docs/exit-gates.md, "Gate quality"): logistic and 16-unit MLP gates
# on rmsnorm(h), with and without log-norm / saturation cosine / previous score; AUC, precision at recall, and the
# 95%-calibrated decisions, as ThresholdCalibration computes them. Usage: gate-features.py DUMP_DIR LAYERS N DIM HEAD_LAYERS GATE_LAYERS [KINDS]
# KINDS (comma-separated, default the five of the doc's table): lin-rms, lin-rich, mlpK-rms, mlpK-rich, lin-rich-prev, or
# mlpK-rms followed by extra inputs joined with '+', some of which a gate could never see (an upper bound on what the
# input can add): pos (log position), prevfmp (the final layer's max probability at the previous position), prevlab
# (whether the exit agreed at the previous position), curfmp (the final layer's max probability here), prevh
# (rmsnorm(h) at the previous position), tok / prevtok (the input token / the previous one, one-hot; tok.i32 in the
# dump); e.g. mlp16-rms+curfmp. The extras need fmp.f32 in the dump (gate-dump.jsh). A kind may end in '@mp' or
# '@mpl': the gate fitted to the head's max probability (or to it where the head agrees, 0 elsewhere) instead of the
# agreement label, a softer target from the head it stands in for. Env TRAIN_WINDOWS (default 64) sizes the fitting
# split, A and B 32 windows each after it (dump at least TRAIN_WINDOWS + 64 windows: gate-dump.jsh -R-Dwindows=N).
import numpy as np, sys, math, json
d = sys.argv[1]; layers = [int(x) for x in sys.argv[2].split(',')]; N = int(sys.argv[3]); dim = int(sys.argv[4])
head_cost = float(sys.argv[5]); gate_cost = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0014
seq = 256; ntr, na, nb = int(__import__('os').environ.get('TRAIN_WINDOWS', 64))*seq, 32*seq, 32*seq
H = {L: np.fromfile(f"{d}/h{L}.f32", np.float32).reshape(-1, dim) for L in layers}
P = {L: np.fromfile(f"{d}/p{L}.f32", np.float32).reshape(-1, dim) for L in layers}
MP = {L: np.fromfile(f"{d}/mp{L}.f32", np.float32) for L in layers}
Y = {L: np.fromfile(f"{d}/ag{L}.u8", np.uint8).astype(np.float64) for L in layers}
tot = len(Y[layers[0]]); print("positions", tot)
sl = {'tr': slice(0, ntr), 'A': slice(ntr, ntr+na), 'B': slice(ntr+na, ntr+na+nb)}
def rms(x): return x / np.sqrt((x.astype(np.float64)**2).mean(1, keepdims=True) + 1e-5)
def cos(a, b): return (a*b).sum(1) / np.sqrt((a*a).sum(1) * (b*b).sum(1) + 1e-30)
def sig(z): return 1/(1+np.exp(-z))
def feats(L, kind, prevscore=None):
    u = rms(H[L]).astype(np.float64)
    if kind == 'rms': return u
    extra = [np.log(np.sqrt((H[L].astype(np.float64)**2).mean(1))), cos(P[L].astype(np.float64), H[L].astype(np.float64))]
    if prevscore is not None: extra.append(prevscore)
    return np.hstack([u, np.stack(extra, 1)])
def fit_logistic(X, y, l2=1e-3, iters=25):
    Xb = np.hstack([X, np.ones((len(X), 1))]); w = np.zeros(Xb.shape[1])
    r = y.mean(); w[-1] = math.log(r/(1-r))
    for _ in range(iters):
        p = sig(Xb@w); g = Xb.T@(p-y)/len(y) + l2*np.r_[w[:-1], 0]
        Hs = (Xb*(p*(1-p))[:, None]).T@Xb/len(y) + l2*np.eye(len(w)); w -= np.linalg.solve(Hs, g)
    return lambda Z: sig(np.hstack([Z, np.ones((len(Z), 1))])@w)
def fit_mlp(X, y, k=16, epochs=30, lr=1e-2, bs=256, seed=0, wd=0.0):
    rng = np.random.default_rng(seed); n, D = X.shape
    mu = 0; W1 = rng.normal(0, 1/math.sqrt(D), (D, k)); b1 = np.zeros(k); w2 = rng.normal(0, 1/math.sqrt(k), k); r = y.mean(); b2 = math.log(r/(1-r))
    ps = [W1, b1, w2, np.array([b2])]; m = [np.zeros_like(p) for p in ps]; v = [np.zeros_like(p) for p in ps]; t = 0
    for ep in range(epochs):
        idx = rng.permutation(n)
        for s in range(0, n - bs + 1, bs):
            b = idx[s:s+bs]; x = X[b]; yy = y[b]
            a = x@ps[0] + ps[1]; hh = np.maximum(a, 0); z = hh@ps[2] + ps[3][0]; g = (sig(z) - yy)/bs
            gw2 = hh.T@g; gb2 = np.array([g.sum()]); gh = np.outer(g, ps[2]) * (a > 0); gW1 = x.T@gh; gb1 = gh.sum(0)
            t += 1
            for i, gr in enumerate([gW1, gb1, gw2, gb2]):
                m[i] = .9*m[i] + .1*gr; v[i] = .999*v[i] + .001*gr*gr
                ps[i] -= lr*((m[i]/(1-.9**t))/(np.sqrt(v[i]/(1-.999**t))+1e-8) + wd*ps[i])
    W1, b1, w2, b2 = ps
    return lambda Z: sig(np.maximum(Z@W1 + b1, 0)@w2 + b2[0])
def auc(s, y):
    o = np.argsort(s); r = np.empty(len(s)); r[o] = np.arange(1, len(s)+1); npos = y.sum(); nneg = len(y)-npos
    return (r[y == 1].sum() - npos*(npos+1)/2)/(npos*nneg)
def prec_at_recall(s, y, rec):
    o = np.argsort(-s); yy = y[o]; tp = np.cumsum(yy); recall = tp/yy.sum(); prec = tp/np.arange(1, len(yy)+1)
    out = []
    for R in rec:
        i = np.searchsorted(recall, R); out.append(prec[min(i, len(prec)-1)])
    return out
def recall_at_prec(s, y, P):
    o = np.argsort(-s); yy = y[o]; tp = np.cumsum(yy); prec = tp/np.arange(1, len(yy)+1)
    ok = np.where(prec >= P)[0]
    ok = ok[ok >= 19]
    return 0.0 if len(ok) == 0 else tp[ok.max()]/yy.sum()
# --- calibration as ThresholdCalibration does, then decisions on B
def wilson_lb(k, n, z):
    if n == 0: return 0
    p = k/n; den = 1+z*z/n; c = p + z*z/(2*n); r = z*math.sqrt(p*(1-p)/n + z*z/(4*n*n)); return (c-r)/den
def at_level(S, Yd, q, minx=20):
    n = len(Yd[0]); taken = np.zeros(n, bool); th = []
    for i in range(len(S)):
        s = S[i]; free = ~taken; o = np.argsort(-s[free]); ys = Yd[i][free][o]; ss = s[free][o]
        cum = np.cumsum(ys)/np.arange(1, len(ys)+1); ok = np.where((cum >= q) & (np.arange(1, len(ys)+1) >= minx))[0]
        if len(ok) == 0: th.append(2.0); continue
        j = ok.max(); tau = ss[j]; th.append(tau); taken |= (s >= tau)
    return th
def decide(S, Yd, th, cheap, hc, gc, atl=None, NN=None):
    atl = atl or layers; NN = NN or N
    n = len(Yd[0]); exitat = np.full(n, len(S)); cost = np.zeros(n); alive = np.ones(n, bool)
    for i in range(len(S)):
        if th[i] > 1: continue
        go = alive & (S[i] >= th[i])
        cost[alive] += (gc + 0) if cheap else hc
        if cheap: cost[go] += hc
        exitat[go] = i; alive &= ~go
    agree = np.ones(n, bool); depth = np.full(n, float(NN))
    for i in range(len(S)):
        sel = exitat == i; agree[sel] = Yd[i][sel] == 1; depth[sel] = atl[i]
    share = [(exitat == i).mean() for i in range(len(S)+1)]
    return agree.mean(), share, (depth+cost).mean(), (NN+cost).mean()
def calibrate(SA, YA, target=0.95, z=1.645):
    best = [2.0]*len(SA)
    for step in range(201):
        q = 1-0.005*step; th = at_level(SA, YA, q); ag = decide(SA, YA, th, True, 0, 0)[0]
        if wilson_lb(round(ag*len(YA[0])), len(YA[0]), z) < target: break
        best = th
    return best
print("head agreement with final (B):", {L: round(Y[L][sl['B']].mean(), 4) for L in layers})
res = {}
methods = {}
methods['softmax'] = {L: MP[L] for L in layers}
methods['saturation'] = {L: cos(P[L].astype(np.float64), H[L].astype(np.float64)) for L in layers}
pos = np.arange(tot) % seq
def earlier(v, fill): # v at the previous position of the same window
    o = np.roll(np.asarray(v, np.float64), 1, axis=0); o[pos == 0] = fill; return o
TOK = np.fromfile(f"{d}/tok.i32", np.int32) if __import__('os').path.exists(f"{d}/tok.i32") else None; VOCAB = 512 if TOK is None else int(TOK.max()) + 1
FMP = None # the final layer's max probability per position, read when an extra input first needs it
def extra(L, name):
    global FMP
    if FMP is None: FMP = np.fromfile(f"{d}/fmp.f32", np.float32).astype(np.float64)
    return {'pos': lambda: np.log1p(pos)[:, None], 'prevfmp': lambda: earlier(FMP, 0.5)[:, None], 'prevlab': lambda: earlier(Y[L], 0.5)[:, None],
            'curfmp': lambda: FMP[:, None], 'prevh': lambda: earlier(rms(H[L]), 0.0), 'tok': lambda: np.eye(VOCAB)[TOK],
            'prevtok': lambda: np.eye(VOCAB)[earlier(TOK, 0).astype(int)]}[name]()
for kind in sys.argv[7].split(',') if len(sys.argv) > 7 else ['lin-rms', 'lin-rich', 'mlp16-rms', 'mlp16-rich', 'lin-rich-prev']:
    sc = {}; prev = None
    spec, _, target = kind.partition('@') # @mp: fit to the head's max probability, @mpl: to it where the head agrees (0 elsewhere)
    base, *extras = spec.split('+')
    for L in layers:
        fk = 'rms' if base.endswith('rms') else 'rich'
        X = feats(L, fk, prev if base.endswith('prev') else None)
        if extras: X = np.hstack([X] + [extra(L, e) for e in extras])
        y = {'': Y[L], 'mp': MP[L].astype(np.float64), 'mpl': MP[L].astype(np.float64) * Y[L]}[target]
        Xtr, ytr = X[sl['tr']], y[sl['tr']]
        if kind.startswith('lin'): f = fit_logistic(Xtr, ytr)
        else: f = fit_mlp(Xtr, ytr, k=int(base.split('-')[0][3:]))
        sc[L] = f(X); prev = sc[L]
    methods[kind] = sc
print(f"{'method':14s} " + " ".join(f"AUC@{L}  P@R.3 P@R.5 R@P.95" for L in layers))
for name, sc in methods.items():
    row = []
    for L in layers:
        s, y = sc[L][sl['B']], Y[L][sl['B']]
        p3, p5 = prec_at_recall(s, y, [0.3, 0.5]); row.append(f"{auc(s,y):.3f} {p3:.3f} {p5:.3f} {recall_at_prec(s,y,0.95):.3f}")
    print(f"{name:14s} " + " | ".join(row))
print("\n95% calibrated on A, decided on B: agreement, exit shares, depth-cost speed-up (N / (exit layer + heads + scores)), compute-cost speed-up (exact KV: N + heads + scores)")
for name, sc in methods.items():
    cheap = name != 'softmax'; gc = 3*64/45312 if name == 'saturation' else gate_cost * (17 if 'mlp16' in name else 1)
    SA = [sc[L][sl['A']] for L in layers]; YA = [Y[L][sl['A']] for L in layers]
    th = calibrate(SA, YA)
    SB = [sc[L][sl['B']] for L in layers]; YB = [Y[L][sl['B']] for L in layers]
    ag, share, depth, comp = decide(SB, YB, th, cheap, head_cost, gc)
    print(f"{name:14s} agree {100*ag:6.2f}%  shares " + " ".join(f"{100*x:5.1f}%" for x in share) + f"  depth {depth:.3f} -> {N/depth:.3f}x  compute {comp:.3f} -> {N/comp:.3f}x  th " + " ".join(f"{t:.3f}" for t in th))
# oracle: a perfect gate (exit exactly where the head agrees), all exits, and each exit alone
YB = [Y[L][sl['B']] for L in layers]
ag, share, depth, comp = decide([y.astype(float) for y in YB], YB, [0.5]*len(layers), True, head_cost, gate_cost)
print(f"{'oracle gate':14s} agree {100*ag:6.2f}%  shares " + " ".join(f"{100*x:5.1f}%" for x in share) + f"  depth {depth:.3f} -> {N/depth:.3f}x  compute {comp:.3f} -> {N/comp:.3f}x")
for i, L in enumerate(layers):
    th = [2.0]*len(layers); th[i] = 0.5
    ag, share, depth, comp = decide([y.astype(float) for y in YB], YB, th, True, head_cost, gate_cost)
    print(f"oracle @{L} only  agree {100*ag:6.2f}%  exits {100*share[i]:5.1f}%  depth {depth:.3f} -> {N/depth:.3f}x")
