# Why the matmul VJP's weight gradient transposes its activation BEFORE flattening (src/ir/ops/compute.ts
# matmulWeightGrad): ORT 1.30 CPU, 2 threads, the train step's weight-gradient GEMMs [2048, M]^T @ [2048, N]
# as FusedMatMul(transA=1) (what ORT makes of Transpose(2-D) -> MatMul) vs Transpose(3-D, [2,0,1]) + Reshape +
# plain MatMul (the copy included), and the input-gradient form g @ W^T (transB: no difference). Interleaved, medians.
#   /work/venv/bin/python scripts/py/gemm_transa_probe.py 512 1536   (M N)
import numpy as np, onnx, onnxruntime as ort, time, sys
from onnx import helper as h, TensorProto as T
def model(nodes, ins, out):
    g=h.make_graph(nodes,'g',[h.make_tensor_value_info(n,T.FLOAT,s) for n,s in ins],[h.make_tensor_value_info(out,T.FLOAT,None)],
      initializer=[h.make_tensor('shp',T.INT64,[2],[M,K]),h.make_tensor('s1',T.INT64,[2],[K,M]),h.make_tensor('s2',T.INT64,[2],[K,N])])
    return h.make_model(g,opset_imports=[h.make_opsetid('',17),h.make_opsetid('com.microsoft',1)],ir_version=9).SerializeToString()
M,N=int(sys.argv[1]),int(sys.argv[2]); K=2048
a=np.random.randn(8,256,M).astype(np.float32); b=np.random.randn(8,256,N).astype(np.float32)
w=np.random.randn(M,N).astype(np.float32)
cases={
 'W: FusedMatMul transA (a2,b2)': (model([h.make_node('Reshape',['x','s1'],['x2']),h.make_node('Reshape',['y','s2'],['y2']),h.make_node('FusedMatMul',['x2','y2'],['z'],domain='com.microsoft',transA=1)],[('x',[8,256,M]),('y',[8,256,N])],'z'), {'x':a,'y':b}),
 'W: Transpose3D[2,0,1]+Reshape+MatMul': (model([h.make_node('Transpose',['x'],['t'],perm=[2,0,1]),h.make_node('Reshape',['t','shp'],['t2']),h.make_node('Reshape',['y','s2'],['y2']),h.make_node('MatMul',['t2','y2'],['z'])],[('x',[8,256,M]),('y',[8,256,N])],'z'), {'x':a,'y':b}),
 'X: FusedMatMul transB g@W^T': (model([h.make_node('FusedMatMul',['y','w'],['z'],domain='com.microsoft',transB=1)],[('y',[8,256,N]),('w',[M,N])],'z'), {'y':b,'w':w}),
 'X: Transpose(W)+MatMul (materialized)': (model([h.make_node('Transpose',['w'],['wt'],perm=[1,0]),h.make_node('Identity',['wt'],['wt2']),h.make_node('MatMul',['y','wt2'],['z'])],[('y',[8,256,N]),('w',[M,N])],'z'), {'y':b,'w':w}),
}
so=ort.SessionOptions(); so.intra_op_num_threads=2; so.inter_op_num_threads=1
sess={k:(ort.InferenceSession(m,so,providers=['CPUExecutionProvider']),f) for k,(m,f) in cases.items()}
for k,(s,f) in sess.items(): s.run(None,f)
res={k:[] for k in sess}
for r in range(9):
    for k,(s,f) in sess.items():
        t=time.perf_counter(); s.run(None,f); res[k].append(time.perf_counter()-t)
for k,v in res.items(): print(f'{np.median(v)*1000:8.1f} ms  {2*K*M*N/np.median(v)/1e9:6.1f} GFLOP/s  {k}')
