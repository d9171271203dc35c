// recsys-trainer export: the ratings and catalogue of a model file (a
// server snapshot holds every rating the server accepted) as a MovieLens
// CSV directory that `train --data=DIR` and `recsys-server --train-data=DIR`
// read back:
//
//   DIR/ratings.csv   userId,movieId,rating,timestamp (header first)
//   DIR/movies.csv    movieId,title,genres (titles quoted, genres '|')
//
// With a user, only that user's ratings and the items they rated: what a
// user asking for their data gets. Ids that ratings.csv cannot carry (a
// comma, a line break, blanks at either end) stop the export with an error
// naming them. Both files are written to temporary names and renamed, so a
// failed export leaves no half-written file under the final names.
#ifndef RECSYS_TRAINER_EXPORT_H_
#define RECSYS_TRAINER_EXPORT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"

namespace recsys {

struct ExportCommand {
  std::string model_file;
  std::string out_dir;
  std::string user;  // empty: every user
};

absl::Status RunExport(const ExportCommand& cmd, std::ostream& log);

}  // namespace recsys

#endif  // RECSYS_TRAINER_EXPORT_H_
