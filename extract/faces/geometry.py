"""Head pose from 478 face landmarks: the Face Landmarker's geometry pipeline, in numpy.

The landmarker's "facial transformation matrix" is a weighted Procrustes fit of its canonical face
mesh (468 vertices, in cm) to the landmarks, after lifting them from the screen into a metric space
with a virtual perspective camera (vertical field of view 63°, near plane 1, origin top left) and two
rounds of scale estimation. The direct landmarker (extract/faces/meshnet.py) skips MediaPipe's graph,
so it computes the same matrix here from the same data: the canonical mesh and the Procrustes weights
come from `geometry_pipeline_metadata_landmarks.binarypb` inside face_landmarker.task, read with
protobuf from a descriptor of MediaPipe's two messages (its generated Python classes are not shipped).
The steps follow MediaPipe's ScreenToMetricSpaceConverter for FACE_LANDMARK_PIPELINE input.
"""
from __future__ import annotations

import numpy as np

FOV_Y_DEG, NEAR = 63.0, 1.0
N_MESH = 468          # the geometry uses the face mesh only, not the 10 iris points


def _messages():
    """Mesh3d and GeometryPipelineMetadata (mediapipe/tasks/cc/vision/face_geometry/proto) as
    protobuf classes, from a hand-built descriptor with the same field numbers and types."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="wordsmile_face_geometry.proto",
                                             package="wordsmile.face_geometry", syntax="proto2")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                f.type_name = f".wordsmile.face_geometry.{tname}"

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("Mesh3d", [("vertex_type", 1, F.TYPE_INT32, opt, None), ("primitive_type", 2, F.TYPE_INT32, opt, None),
                   ("vertex_buffer", 3, F.TYPE_FLOAT, rep, None), ("index_buffer", 4, F.TYPE_UINT32, rep, None)])
    msg("WeightedLandmarkRef", [("landmark_id", 1, F.TYPE_UINT32, opt, None), ("weight", 2, F.TYPE_FLOAT, opt, None)])
    msg("GeometryPipelineMetadata", [("canonical_mesh", 1, F.TYPE_MESSAGE, opt, "Mesh3d"),
                                     ("procrustes_landmark_basis", 2, F.TYPE_MESSAGE, rep, "WeightedLandmarkRef"),
                                     ("input_source", 3, F.TYPE_INT32, opt, None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wordsmile.face_geometry.GeometryPipelineMetadata"))


class HeadPose:
    """`transform(lm_norm, width, height)`: the landmarker's 4×4 facial transformation matrix for
    landmarks normalised to an image of that size (x, y in [0, 1]; z in units of the image width)."""

    def __init__(self, metadata: bytes):
        meta = _messages()()
        meta.ParseFromString(metadata)
        if meta.input_source == 2:      # FACE_DETECTION_PIPELINE: not the landmarker's metadata
            raise ValueError("geometry metadata is for the face-detection pipeline, not the landmarker")
        vb = np.asarray(meta.canonical_mesh.vertex_buffer, np.float64)
        if meta.canonical_mesh.vertex_type != 0 or vb.size != N_MESH * 5:
            raise ValueError(f"canonical mesh: expected {N_MESH} position+uv vertices, got {vb.size} floats")
        weights = np.zeros(N_MESH)
        for w in meta.procrustes_landmark_basis:
            weights[w.landmark_id] = w.weight
        if weights.sum() <= 0:
            raise ValueError("geometry metadata has no Procrustes weights")
        # only the weighted points enter the fits (~1/4 of the mesh); all of them set the depth offset
        self.basis = np.flatnonzero(weights > 0)
        self.weights = weights[self.basis]
        self.canonical = vb.reshape(N_MESH, 5)[self.basis, :3]

    def _fit(self, target: np.ndarray) -> np.ndarray:
        """Weighted similarities (scale · rotation, translation) taking the canonical mesh onto each
        `target` (n, basis points, 3), as (n, 4, 4) matrices."""
        w = self.weights
        src = self.canonical
        mu_s = w @ src / w.sum()
        mu_t = np.einsum("k,nkd->nd", w, target) / w.sum()
        cs = src - mu_s
        wt = target * w[None, :, None]
        U, _, Vt = np.linalg.svd(np.einsum("nki,kj->nij", wt, cs))
        flip = np.linalg.det(U) * np.linalg.det(Vt) < 0
        U[flip, :, 2] *= -1
        R = U @ Vt
        scale = np.einsum("nij,kj,nki->n", R, cs, wt) / (w[:, None] * cs * src).sum()
        T = np.zeros((len(target), 4, 4))
        T[:, :3, :3] = scale[:, None, None] * R
        T[:, :3, 3] = mu_t - scale[:, None] * np.einsum("nij,j->ni", R, mu_s)
        T[:, 3, 3] = 1.0
        return T

    def transform(self, lm_norm: np.ndarray, width: float, height: float) -> np.ndarray:
        """(4, 4) for one face's (478, 3) landmarks, or (n, 4, 4) for (n, 478, 3): one batch is
        ~10x cheaper per face than face by face."""
        lm = np.asarray(lm_norm, np.float64)
        one = lm.ndim == 2
        lm = lm[None, :N_MESH] if one else lm[:, :N_MESH]
        h_near = 2 * NEAR * np.tan(np.radians(FOV_Y_DEG) / 2)
        w_near = width * h_near / height
        depth_offset = lm[:, :, 2].mean(1)[:, None] * w_near
        s = lm[:, self.basis]
        s[..., 1] = 1.0 - s[..., 1]                               # origin top left → y up
        s *= (w_near, h_near, w_near)
        s[..., 0] -= w_near / 2
        s[..., 1] -= h_near / 2

        def lift(scale):        # screen → metric: move to the near plane, rescale z, unproject x, y
            m = s.copy()
            m[..., 2] = (m[..., 2] - depth_offset + NEAR) / scale[:, None]
            m[..., :2] *= m[..., 2:3] / NEAR
            m[..., 2] *= -1
            return m

        scale1 = np.linalg.norm(self._fit(s * (1.0, 1.0, -1.0))[:, :3, 0], axis=1)
        scale2 = np.linalg.norm(self._fit(lift(scale1))[:, :3, 0], axis=1)
        T = self._fit(lift(scale1 * scale2)).astype(np.float32)
        return T[0] if one else T
