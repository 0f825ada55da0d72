/* The pieces of `retort train`'s set-up that `retort label` shares
 * (train.c): the same model shape, teacher checks and teacher settings, so
 * that a label cache holds exactly what online teacher ranks would send. */
#ifndef TRAINER_TRAIN_INTERNAL_H
#define TRAINER_TRAIN_INTERNAL_H

#include "comm.h"
#include "config.h"
#include "student.h"
#include "teacher.h"

/* The student's model shape: [model] plus the data's vocabulary, or, with
 * train.init, the shape of that checkpoint. */
rt_status trainer_run_model_config(const trainer_config *cfg, int64_t vocab, student_config *out);

/* Reads the teacher checkpoint's shape into *tc and checks it against the
 * student (vocabulary, seq_len, feature-map layers) and the label settings. */
rt_status trainer_check_teacher(const trainer_config *cfg, const student_config *sc,
                                student_config *tc);

/* The teacher's settings for this run (shape tmodel, `batch` rows per
 * forward): label scheme, temperature, precision, feature layers. */
teacher_config trainer_teacher_config(const trainer_config *cfg, const student_config *tmodel,
                                      int batch);

/* The shape of the records of b rows of the student's T positions that a
 * teacher with settings tc sends (n_feat feature maps): tc's label width,
 * or its hidden states (hidden width = the teacher's d_model). */
comm_record_shape trainer_record_shape(const teacher_config *tc, int b, int T, int n_feat);

#endif
