"""Photo-only queries (no title) with a stronger type head: a linear head on [colour histogram, CNN] and an MLP head
(CNN -> 512 ReLU -> articleType, dropout 0.2, weight decay 1e-4, 300 full-batch Adam steps at 1e-3; one setting,
fixed before the run), both trained on products with heldout_bucket >= 0.4; the colour head of visual_learned.py.
Queries: the raw image vector against raw image vectors, and the image projected into the fused space against
the fused vectors (`similar --image`). Run from the worktree root after visual_learned.py.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/visual_photo_mlp.py
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np, torch
import visual_similar as v
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel
torch.manual_seed(0); torch.set_num_threads(1)
ids,types,colours,paths=v.read_catalog(); j=v.Judge(types,colours)
b=np.array([heldout_bucket(i) for i in ids]); split={'valid':np.flatnonzero((b>=0.2)&(b<0.4)),'test':np.flatnonzero(b<0.2)}; train=np.flatnonzero(b>=0.4)
L=lambda n: np.load(v.CACHE/f'{n}.npy'); pad,fused,C,hist=L('image-pad'),L('fused'),L('learned-colour'),L('colour-lab488-fg245-c0.3')
photo=np.asarray(FusionModel.load(v.DEFAULT_OUT/'fashion-shared'/FUSION_DIR).fused_query('image',pad),dtype=np.float32)
def head(X,labels,wd,hidden=0):
    labels=np.array(labels); classes,y=np.unique(labels[train],return_inverse=True)
    mu,sd=X[train].mean(0),X[train].std(0)+1e-6; Xt=torch.tensor((X-mu)/sd,dtype=torch.float32)
    net=torch.nn.Linear(X.shape[1],len(classes)) if not hidden else torch.nn.Sequential(torch.nn.Dropout(0.2),torch.nn.Linear(X.shape[1],hidden),torch.nn.ReLU(),torch.nn.Dropout(0.2),torch.nn.Linear(hidden,len(classes)))
    opt=torch.optim.Adam(net.parameters(),lr=1e-2 if not hidden else 1e-3,weight_decay=wd); yt=torch.tensor(y)
    for _ in range(300):
        net.train(); opt.zero_grad(); l=torch.nn.functional.cross_entropy(net(Xt[train]),yt); l.backward(); opt.step()
    net.eval()
    with torch.no_grad(): P=torch.softmax(net(Xt),1).numpy()
    acc={s:round(float((classes[P[q].argmax(1)]==labels[q]).mean()),4) for s,q in split.items()}
    D=np.sqrt(P); D/=np.linalg.norm(D,axis=1,keepdims=True); return D.astype(np.float32),acc
for name,X,wd,hid in (('lin pad+hist',np.hstack([hist,pad]),1e-2,0),('mlp512 pad',pad,1e-4,512)):
    T,acc=head(X,types,wd,hid); print(name,'acc',acc,flush=True)
    for qn,Q,G in (('raw',pad,pad),('photo->fused',photo,fused)):
        for wt,wc in ((0.5,0.3),(1.0,0.3),(1.0,0.5)):
            r={s:j.precision(q, Q[q]@G.T+wt*(T[q]@T.T)+wc*(C[q]@C.T)) for s,q in split.items()}
            print(f"  {qn:13s} wt={wt} wc={wc} valid {r['valid'][0]:.4f} {r['valid'][1]:.4f} test {r['test'][0]:.4f} {r['test'][1]:.4f}",flush=True)
